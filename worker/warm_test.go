package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// warmBundle is a worker with caches over a test database.
type warmBundle struct {
	redis   *testenv.Redis
	db      *testenv.DB
	cfg     config.Config
	client  *tasks.Client
	worker  *worker.Worker
	inspect *asynq.Inspector
	reg     *prometheus.Registry
	stop    func()
}

// warmSetup builds (and, when start is true, runs) a worker whose cache
// "user" reads the users table of db.
func warmSetup(t *testing.T, db *testenv.DB, start bool, edit func(*config.Config)) *warmBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Database = db.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 4
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	cfg.Caches = config.DemoCaches()
	if edit != nil {
		edit(&cfg)
	}
	b := warmSetupOn(t, r, db, cfg)
	if start {
		b.start(t)
	}
	return b
}

// warmSetupOn builds a worker on an existing Redis server (a second worker
// process, for example), not started.
func warmSetupOn(t *testing.T, r *testenv.Redis, db *testenv.DB, cfg config.Config) *warmBundle {
	t.Helper()
	client := tasks.NewClientFromRedis(r.Client)
	reg := prometheus.NewRegistry()
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, DB: db.DB, Client: client, Registry: reg},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := cfg.Redis.ConnOpt()
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	return &warmBundle{redis: r, db: db, cfg: cfg, client: client, worker: w, inspect: insp, reg: reg, stop: func() {}}
}

// start runs the worker until the test ends or stop is called.
func (b *warmBundle) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.worker.Run(ctx) }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop within 15s")
		}
	}
	t.Cleanup(b.stop)
	waitFor(t, 5*time.Second, b.worker.Ready)
}

// usersTable creates users(id, email, full_name, org_id) for the database kind.
func usersTable(t *testing.T, db *testenv.DB) {
	t.Helper()
	ddl := map[string]string{
		"postgres": "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, org_id BIGINT)",
		"sqlite":   "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, org_id INTEGER)",
		"mysql":    "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200) NOT NULL, full_name VARCHAR(200) NULL, org_id BIGINT NULL)",
	}[db.Kind]
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
}

func insertUser(t *testing.T, db *testenv.DB, id int, email string, name any) {
	t.Helper()
	if _, err := db.Exec(db.Rebind("INSERT INTO users (id, email, full_name, org_id) VALUES (?, ?, ?, ?)"), id, email, name, id%3); err != nil {
		t.Fatal(err)
	}
}

// waitTask enqueues p (kept after it finishes) and waits until it completes.
func (b *warmBundle) runTask(t *testing.T, p tasks.Payload) *asynq.TaskInfo {
	t.Helper()
	info, err := b.client.Enqueue(context.Background(), p, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return b.waitTask(t, info, 20*time.Second)
}

func (b *warmBundle) waitTask(t *testing.T, info *asynq.TaskInfo, d time.Duration) *asynq.TaskInfo {
	t.Helper()
	var got *asynq.TaskInfo
	waitFor(t, d, func() bool {
		var err error
		got, err = b.inspect.GetTaskInfo(info.Queue, info.ID)
		if err == nil && got.State == asynq.TaskStateArchived {
			t.Fatalf("task archived: %s", got.LastErr)
		}
		return err == nil && got.State == asynq.TaskStateCompleted
	})
	return got
}

func TestWarmByIDsOnEveryDatabase(t *testing.T) {
	t.Parallel()
	for kind, open := range testenv.SQLDatabases(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			usersTable(t, db)
			insertUser(t, db, 1, "a@x", "Ann")
			insertUser(t, db, 2, "b@x", nil) // NULL name: no name field
			b := warmSetup(t, db, true, nil)
			ctx := context.Background()
			rc := b.redis.Client
			// Stale data: an extra field that must vanish, a key whose row is gone.
			rc.HSet(ctx, "user:1", "id", "1", "email", "old@x", "nickname", "stale")
			rc.HSet(ctx, "user:3", "id", "3", "email", "gone@x")

			info := b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1", "2", "3", "2"}})

			if got := rc.HGetAll(ctx, "user:1").Val(); !reflect.DeepEqual(got, map[string]string{"id": "1", "email": "a@x", "name": "Ann"}) {
				t.Errorf("user:1 = %v", got)
			}
			if got := rc.HGetAll(ctx, "user:2").Val(); !reflect.DeepEqual(got, map[string]string{"id": "2", "email": "b@x"}) {
				t.Errorf("user:2 = %v (a NULL column must leave no field)", got)
			}
			if rc.Exists(ctx, "user:3").Val() != 0 {
				t.Error("user:3 still cached although its row is gone")
			}
			for _, k := range []string{"user:1", "user:2"} {
				if ttl := rc.TTL(ctx, k).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
					t.Errorf("%s TTL = %s, want about 1h", k, ttl)
				}
			}
			var res struct{ Rows, Written, Deleted, Queries int }
			if err := json.Unmarshal(info.Result, &res); err != nil {
				t.Fatalf("result %q: %v", info.Result, err)
			}
			if res.Rows != 2 || res.Written != 2 || res.Deleted != 1 || res.Queries != 1 {
				t.Errorf("result = %+v, want 2 rows read once (duplicate id 2), 2 written, 1 deleted, 1 query", res)
			}
		})
	}
}

func TestWarmChunksOneQueryPerChunk(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	for i := 1; i <= 25; i++ {
		insertUser(t, db, i, fmt.Sprintf("u%d@x", i), "n")
	}
	b := warmSetup(t, db, true, func(c *config.Config) { c.Warm.ChunkSize = 10 })
	ids := tasks.IDs{}
	for i := 1; i <= 25; i++ {
		ids = append(ids, fmt.Sprint(i))
	}
	info := b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: ids})
	var res struct{ Written, Queries int }
	_ = json.Unmarshal(info.Result, &res)
	if res.Written != 25 || res.Queries != 3 {
		t.Fatalf("result %s: want 25 written with 3 queries (chunks of 10)", info.Result)
	}
}

func TestWarmAddsKeysToTagSetsAndPublishesEvents(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	insertUser(t, db, 1, "a@x", "Ann") // org 1
	insertUser(t, db, 4, "d@x", "Dan") // org 1
	insertUser(t, db, 2, "b@x", "Bob") // org 2
	b := warmSetup(t, db, true, func(c *config.Config) {
		cs := c.Caches["user"]
		cs.ByIDs = "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?)"
		cs.All = "SELECT id, email, full_name AS name, org_id FROM users WHERE id > ? ORDER BY id LIMIT ?"
		cs.Tags = []string{"org:{org_id}"}
		c.Caches["user"] = cs
	})
	ctx := context.Background()
	sub := b.redis.Client.Subscribe(ctx, b.cfg.Events.Channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	info := b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1", "2", "4", "9"}})

	tag := keys.Default().Tag("org:1")
	members := b.redis.Client.SMembers(ctx, tag).Val()
	if len(members) != 2 || !contains(members, "user:1") || !contains(members, "user:4") {
		t.Fatalf("%s = %v, want user:1 and user:4", tag, members)
	}
	keyTTL := b.redis.Client.PTTL(ctx, "user:1").Val()
	if tagTTL := b.redis.Client.PTTL(ctx, tag).Val(); tagTTL < keyTTL {
		t.Fatalf("tag set TTL %s is shorter than its key's %s", tagTTL, keyTTL)
	}
	got := map[string]events.Event{}
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case msg := <-sub.Channel():
			var ev events.Event
			if err := json.Unmarshal([]byte(msg.Payload), &ev); err != nil {
				t.Fatalf("event %q: %v", msg.Payload, err)
			}
			got[ev.Type] = ev
		case <-deadline:
			t.Fatalf("events received: %v, want warmed and deleted", got)
		}
	}
	w := got[events.TypeWarmed]
	if w.Cache != "user" || w.TaskID != info.ID || len(w.IDs) != 3 || w.KeyCount != 3 {
		t.Errorf("warmed event = %+v", w)
	}
	if d := got[events.TypeDeleted]; !reflect.DeepEqual(d.IDs, []string{"9"}) || !reflect.DeepEqual(d.Keys, []string{"user:9"}) {
		t.Errorf("deleted event = %+v", d)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestWorkerRejectsBadSpecAtStartup(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	r := testenv.NewRedis(t)
	for _, tc := range []struct {
		name string
		edit func(*config.CacheSpec)
		want string
	}{
		{"key column not returned", func(c *config.CacheSpec) { c.Key = "user:{user_id}" }, `names column "user_id"`},
		{"query fails", func(c *config.CacheSpec) { c.All = "SELECT id FROM people WHERE id > ? ORDER BY id LIMIT ?" }, "all query failed"},
		{"tag column not returned", func(c *config.CacheSpec) { c.Tags = []string{"org:{org_id}"} }, `names column "org_id"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Redis = r.Config
			cfg.Database = db.Config
			cfg.Worker.MetricsAddr = ""
			cs := config.DemoCaches()["user"]
			tc.edit(&cs)
			cfg.Caches = map[string]config.CacheSpec{"accounts": cs}
			_, err := worker.New(cfg, worker.Deps{Redis: r.Client, DB: db.DB}, nil)
			if err == nil || !strings.Contains(err.Error(), `cache "accounts"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("worker.New err = %v; want it to name cache \"accounts\" and say %q", err, tc.want)
			}
		})
	}
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Caches = config.DemoCaches()
	if _, err := worker.New(cfg, worker.Deps{Redis: r.Client}, nil); err == nil || !strings.Contains(err.Error(), "DB") {
		t.Fatalf("caches without a database: err = %v", err)
	}
}

func TestUnknownCacheIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	b := warmSetup(t, db, true, nil)
	info, err := b.client.Enqueue(context.Background(), &tasks.WarmArgs{Cache: "nope", IDs: tasks.IDs{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	var got *asynq.TaskInfo
	waitFor(t, 10*time.Second, func() bool {
		got, err = b.inspect.GetTaskInfo(info.Queue, info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	})
	if !strings.Contains(got.LastErr, `unknown cache "nope"`) || got.Retried != 0 {
		t.Fatalf("last error %q after %d retries", got.LastErr, got.Retried)
	}
}

func skippedCount(b *warmBundle, cache string) float64 {
	return testutil.ToFloat64(b.worker.Metrics().Skipped.WithLabelValues(cache))
}
