package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// invBundle is a running worker with a "user" cache over SQLite (tagged by
// org) and a subscriber to its events.
type invBundle struct {
	*bundle
	events chan events.Event
}

// setupInvalidation starts a private Redis, a SQLite users table, a worker
// with the user cache, and an events subscriber; mutate adjusts the config.
func setupInvalidation(t *testing.T, mutate func(*config.Config)) *invBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	db := testenv.SQLite(t)
	db.MustExec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, full_name TEXT NOT NULL, org_id INTEGER)`)
	for i := 1; i <= 5; i++ {
		db.MustExec(`INSERT INTO users (id, email, full_name, org_id) VALUES (?, ?, ?, ?)`, i, fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("User %d", i), 7)
	}
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Database = db.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	cfg.Events.MaxKeys = 10
	cfg.Caches = map[string]config.CacheSpec{"user": {
		Key:   "user:{id}",
		TTL:   time.Hour,
		ByIDs: "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?)",
		Tags:  []string{"org:{org_id}"},
	}}
	if mutate != nil {
		mutate(&cfg)
	}
	client := tasks.NewClientFromRedis(r.Client)
	reg := prometheus.NewRegistry()
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, DB: db.DB, Client: client, Registry: reg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	ev := make(chan events.Event, 100)
	subscribed := make(chan struct{}, 10)
	subDone := make(chan error, 1)
	sub := events.Subscriber{Client: r.Client, Channel: cfg.Events.Channel, Logger: slog.New(slog.DiscardHandler),
		OnSubscribed: func() { subscribed <- struct{}{} }}
	go func() { subDone <- sub.Run(ctx, func(e events.Event) { ev <- e }) }()
	t.Cleanup(func() {
		cancel()
		for _, ch := range []chan error{done, subDone} {
			select {
			case err := <-ch:
				if err != nil {
					t.Errorf("stopped with %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("worker or subscriber did not stop within 10s")
			}
		}
	})
	opt, _ := cfg.Redis.ConnOpt()
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	waitFor(t, 5*time.Second, w.Ready)
	select {
	case <-subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("events subscriber not subscribed within 5s")
	}
	return &invBundle{bundle: &bundle{redis: r, cfg: cfg, client: client, worker: w, reg: reg, inspect: insp}, events: ev}
}

// nextEvent returns the next event of type typ, skipping others (warm events).
func (b *invBundle) nextEvent(t *testing.T, typ string) events.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-b.events:
			if e.Type == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", typ)
		}
	}
}

// waitDone waits until the task has completed and returns its result.
func (b *invBundle) waitDone(t *testing.T, queue, id string) []byte {
	t.Helper()
	var info *asynq.TaskInfo
	waitFor(t, 10*time.Second, func() bool {
		var err error
		info, err = b.inspect.GetTaskInfo(queue, id)
		if err == nil && info.State == asynq.TaskStateArchived {
			t.Fatalf("task archived: %s", info.LastErr)
		}
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	return info.Result
}

func TestInvalidateByIDsPublishesAndRewarms(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	rdb.HSet(ctx, "user:1", "id", "1", "email", "stale@example.com", "nickname", "old field")
	rdb.HSet(ctx, "user:2", "id", "2", "email", "stale2@example.com")
	info, err := b.client.Enqueue(ctx, &tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{"1", "2"}, Rewarm: true}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := b.nextEvent(t, events.TypeInvalidated)
	if e.Cache != "user" || !slices.Equal(e.IDs, []string{"1", "2"}) || !slices.Equal(e.Keys, []string{"user:1", "user:2"}) || e.KeyCount != 2 || e.TaskID != info.ID {
		t.Fatalf("event = %+v", e)
	}
	var res struct {
		Keys, Deleted int
		Rewarm        string `json:"rewarm_task_id"`
	}
	if err := json.Unmarshal(b.waitDone(t, info.Queue, info.ID), &res); err != nil || res.Keys != 2 || res.Deleted != 2 || res.Rewarm != "rewarm:"+info.ID {
		t.Fatalf("result = %+v (%v)", res, err)
	}
	// The rewarm refreshes both keys from the database: whole hashes, the
	// stale field gone.
	waitFor(t, 10*time.Second, func() bool {
		return rdb.HGet(ctx, "user:1", "email").Val() == "u1@example.com" && rdb.HGet(ctx, "user:2", "email").Val() == "u2@example.com"
	})
	if rdb.HExists(ctx, "user:1", "nickname").Val() {
		t.Fatal("stale field survived the rewarm")
	}
}

func TestInvalidateUnknownCacheIsArchivedWithReason(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	info, err := b.client.Enqueue(ctx, &tasks.InvalidateArgs{Cache: "usr", IDs: tasks.IDs{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	var got *asynq.TaskInfo
	waitFor(t, 10*time.Second, func() bool {
		got, err = b.inspect.GetTaskInfo(info.Queue, info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	})
	if got.Retried != 0 || !strings.Contains(got.LastErr, `unknown cache "usr" (configured: user)`) {
		t.Fatalf("retried %d, last error %q", got.Retried, got.LastErr)
	}
}

func TestInvalidateKeysNamesTheCacheWhenUnambiguous(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	rdb.Set(ctx, "user:4", "x", 0)
	rdb.Set(ctx, "report:9", "x", 0)
	if _, err := b.client.InvalidateKeys(ctx, []string{"user:4", "user:5"}); err != nil {
		t.Fatal(err)
	}
	if e := b.nextEvent(t, events.TypeInvalidated); e.Cache != "user" || !slices.Equal(e.IDs, []string{"4", "5"}) {
		t.Fatalf("event = %+v, want cache user ids [4 5]", e)
	}
	if _, err := b.client.InvalidateKeys(ctx, []string{"report:9"}); err != nil {
		t.Fatal(err)
	}
	if e := b.nextEvent(t, events.TypeInvalidated); e.Cache != "" || !slices.Equal(e.Keys, []string{"report:9"}) {
		t.Fatalf("event = %+v, want keys [report:9] and no cache", e)
	}
	if n := rdb.Exists(ctx, "user:4", "report:9").Val(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestInvalidatePatternJobReportsAndPublishes(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	pipe := rdb.Pipeline()
	for i := 0; i < 1500; i++ {
		pipe.Set(ctx, fmt.Sprintf("page:/docs/%d", i), "html", 0)
	}
	pipe.Set(ctx, "pages:index", "keep", 0)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := b.client.Enqueue(ctx, &tasks.InvalidatePatternArgs{Pattern: "page:*"}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := b.nextEvent(t, events.TypeInvalidated)
	if e.Pattern != "page:*" || e.KeyCount != 1500 || len(e.Keys) != 10 || e.TaskID != info.ID {
		t.Fatalf("event = pattern %q key_count %d keys %d task %q", e.Pattern, e.KeyCount, len(e.Keys), e.TaskID)
	}
	var res struct {
		Scanned, Deleted int64
		Done             bool
	}
	if err := json.Unmarshal(b.waitDone(t, info.Queue, info.ID), &res); err != nil || res.Deleted != 1500 || res.Scanned != 1500 || !res.Done {
		t.Fatalf("result = %+v (%v)", res, err)
	}
	if rdb.Get(ctx, "pages:index").Val() != "keep" {
		t.Fatal("non-matching key deleted")
	}
}

func TestInvalidatePatternRefusesMatchAll(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	rdb.Set(ctx, "app:1", "x", 0)
	for _, p := range []string{"*", "?*", "[a-z]*"} {
		if _, err := b.client.InvalidatePattern(ctx, p); !errors.Is(err, tasks.ErrInvalidPayload) || !strings.Contains(err.Error(), "allow_all") {
			t.Errorf("InvalidatePattern(%q) = %v, want a refusal naming allow_all", p, err)
		}
	}
	// A producer that skips validation: the job is archived at once.
	raw := asynq.NewClientFromRedisClient(rdb)
	info, err := raw.EnqueueContext(ctx, asynq.NewTask(tasks.KindInvalidatePattern, []byte(`{"pattern":"*"}`)), asynq.Queue(tasks.QueueCritical))
	if err != nil {
		t.Fatal(err)
	}
	var got *asynq.TaskInfo
	waitFor(t, 10*time.Second, func() bool {
		got, err = b.inspect.GetTaskInfo(info.Queue, info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	})
	if !strings.Contains(got.LastErr, "allow_all") || rdb.Exists(ctx, "app:1").Val() != 1 {
		t.Fatalf("last error %q; app:1 exists=%d", got.LastErr, rdb.Exists(ctx, "app:1").Val())
	}
	// Confirmed, it deletes application keys, and the queue keeps working.
	info, err = b.client.Enqueue(ctx, &tasks.InvalidatePatternArgs{Pattern: "*", AllowAll: true}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b.waitDone(t, info.Queue, info.ID)
	if rdb.Exists(ctx, "app:1").Val() != 0 {
		t.Fatal("allow_all pattern left app:1")
	}
	info, err = b.client.InvalidateKeys(ctx, []string{"app:2"}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b.waitDone(t, info.Queue, info.ID)
}

func TestInvalidateTagDeletesMembersAndSet(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	k := keys.Default()
	rdb.SAdd(ctx, k.Tag("org:7"), "user:1", "user:2", "user:3")
	rdb.HSet(ctx, "user:1", "id", "1")
	rdb.HSet(ctx, "user:2", "id", "2")
	rdb.HSet(ctx, "user:9", "id", "9")
	info, err := b.client.InvalidateTag(ctx, "org:7", tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := b.nextEvent(t, events.TypeInvalidated)
	slices.Sort(e.Keys)
	if e.Tag != "org:7" || e.KeyCount != 3 || !slices.Equal(e.Keys, []string{"user:1", "user:2", "user:3"}) {
		t.Fatalf("event = %+v", e)
	}
	var res struct{ Members, Deleted int }
	if err := json.Unmarshal(b.waitDone(t, info.Queue, info.ID), &res); err != nil || res.Members != 3 || res.Deleted != 2 {
		t.Fatalf("result = %+v (%v)", res, err)
	}
	if rdb.Exists(ctx, "user:1", "user:2", k.Tag("org:7")).Val() != 0 || rdb.Exists(ctx, "user:9").Val() != 1 {
		t.Fatal("tag invalidation deleted the wrong keys")
	}
}
