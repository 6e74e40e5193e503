package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// sessMessy writes sessions the way applications really leave them and
// returns the server's time. Index user:alice:sessions lists a live
// session, an expired one and two dead tokens; user:ghost:sessions only dead
// tokens.
func sessMessy(t *testing.T, rdb redis.UniversalClient) time.Time {
	t.Helper()
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	iso := func(d time.Duration) string { return now.Add(-d).UTC().Format("2006-01-02T15:04:05.000000") }
	write := func(key string, ttl time.Duration, fields ...string) {
		if err := rdb.HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			rdb.Expire(ctx, key, ttl)
		}
	}
	write("session:fresh", 23*time.Hour, "user_id", "alice", "created_at", iso(30*time.Minute))
	write("session:old", time.Hour, "user_id", "alice", "created_at", iso(48*time.Hour)) // past max_age
	write("session:nottl", 0, "user_id", "bob", "created_at", iso(20*time.Minute))       // HSET without EXPIRE
	write("session:idle", 20*time.Hour, "user_id", "bob", "created_at", iso(3*time.Hour), "last_seen", iso(2*time.Hour))
	write("session:zoned", 0, "user_id", "carol", "created_at", now.Add(-30*time.Hour).In(time.FixedZone("", 2*3600)).Format(time.RFC3339))
	write("session:unix", 0, "user_id", "carol", "created_at", fmt.Sprint(now.Add(-10*time.Minute).Unix()))
	write("session:pythonnomicro", 0, "user_id", "dave", "created_at", now.Add(-15*time.Minute).UTC().Format("2006-01-02T15:04:05"))
	write("session:garbled", 0, "user_id", "eve", "created_at", "last tuesday") // unparseable: left alone
	write("session:nouser", 0, "created_at", iso(72*time.Hour))                 // unparseable: left alone
	write("session:config", 0, "theme", "dark")                                 // not a session at all
	rdb.Set(ctx, "session:legacy", "pickled", 0)                                // a string: not a hash
	rdb.SAdd(ctx, "user:alice:sessions", "fresh", "old", "dead1", "dead2")      // dead tokens
	rdb.SAdd(ctx, "user:ghost:sessions", "gone1", "gone2")                      // only dead tokens
	rdb.SAdd(ctx, "user:bob:sessions", "nottl", "idle")                         // idle will go
	return now
}

func sessConfig() config.SessionsConfig {
	cfg := config.DefaultSessions()
	cfg.MaxAge = 24 * time.Hour
	cfg.IdleTimeout = time.Hour
	cfg.BatchSize = 4 // several batches even on this small keyspace
	return cfg
}

// sessDump captures every key with its type, value and whether it has a TTL.
func sessDump(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range rdb.Keys(ctx, "*").Val() {
		var v any
		switch rdb.Type(ctx, k).Val() {
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = m
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		default:
			v = rdb.Get(ctx, k).Val()
		}
		out[k] = fmt.Sprintf("%v ttl=%v", v, rdb.TTL(ctx, k).Val() > 0)
	}
	return out
}

func TestCleanupSessionsMessyData(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	sessMessy(t, r.Client)
	garbled := r.Client.HGetAll(ctx, "session:garbled").Val()

	rep, err := worker.CleanupSessions(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	want := worker.SessionCleanupReport{
		Pattern: "session:*", Scanned: 10,
		Expired: 3, ExpiredByAge: 2, ExpiredByIdle: 1, // old, zoned (30h); idle
		FixedTTL: 3, // nottl, unix, pythonnomicro
	}
	if rep.Scanned != want.Scanned || rep.Expired != want.Expired || rep.ExpiredByAge != want.ExpiredByAge ||
		rep.ExpiredByIdle != want.ExpiredByIdle || rep.FixedTTL != want.FixedTTL || rep.Unparseable != 3 || rep.ChangedMeanwhile != 0 {
		t.Fatalf("report = %+v", rep)
	}
	slices.Sort(rep.UnparseableKeys)
	if !slices.Equal(rep.UnparseableKeys, []string{"session:config", "session:garbled", "session:nouser"}) {
		t.Fatalf("unparseable keys = %v", rep.UnparseableKeys)
	}
	for _, k := range []string{"session:old", "session:zoned", "session:idle"} {
		if r.Client.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s should be deleted", k)
		}
	}
	// Every surviving session has a TTL, shortened to what max_age and
	// idle_timeout leave; unparseable hashes are untouched.
	for k, within := range map[string][2]time.Duration{
		"session:fresh":         {22 * time.Hour, 23 * time.Hour},
		"session:nottl":         {30 * time.Minute, 40 * time.Minute}, // what idle_timeout leaves
		"session:unix":          {40 * time.Minute, 50 * time.Minute},
		"session:pythonnomicro": {40 * time.Minute, 45 * time.Minute},
	} {
		ttl := r.Client.TTL(ctx, k).Val()
		if ttl <= 0 || ttl < within[0] || ttl > within[1] {
			t.Errorf("%s TTL = %s, want within %v", k, ttl, within)
		}
	}
	for _, k := range []string{"session:garbled", "session:nouser", "session:config", "session:legacy"} {
		if r.Client.TTL(ctx, k).Val() != -1 {
			t.Errorf("%s was given a TTL; unparseable data must be left alone", k)
		}
	}
	if got := r.Client.HGetAll(ctx, "session:garbled").Val(); fmt.Sprint(got) != fmt.Sprint(garbled) {
		t.Errorf("garbled session changed: %v", got)
	}
	// Index sets: dead tokens and tokens of deleted sessions are gone.
	if m := r.Client.SMembers(ctx, "user:alice:sessions").Val(); !slices.Equal(m, []string{"fresh"}) {
		t.Errorf("alice's index = %v, want [fresh]", m)
	}
	if r.Client.Exists(ctx, "user:ghost:sessions").Val() != 0 {
		t.Error("ghost's index of dead tokens survived")
	}
	if m := r.Client.SMembers(ctx, "user:bob:sessions").Val(); !slices.Equal(m, []string{"nottl"}) {
		t.Errorf("bob's index = %v, want [nottl]", m)
	}
	if rep.IndexMembersPruned != 4 || rep.IndexSetsDeleted != 1 || rep.IndexSetsScanned != 3 {
		t.Errorf("index figures = scanned %d, pruned %d, deleted %d; want 3, 4 (dead1, dead2, gone1, gone2), 1",
			rep.IndexSetsScanned, rep.IndexMembersPruned, rep.IndexSetsDeleted)
	}

	// At-least-once delivery: a second run finds nothing more to do.
	again, err := worker.CleanupSessions(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Expired != 0 || again.FixedTTL != 0 || again.IndexMembersPruned != 0 || again.IndexSetsDeleted != 0 || again.Unparseable != 3 {
		t.Fatalf("second run = %+v, want nothing more done", again)
	}
}

func TestCleanupSessionsDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	sessMessy(t, r.Client)
	before := sessDump(t, r.Client)
	rep, err := worker.CleanupSessions(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := sessDump(t, r.Client); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("dry run changed data:\nbefore %v\nafter  %v", before, after)
	}
	// It reports what a real run would do (index tokens of sessions it
	// would delete still have their session, so they are not counted).
	if !rep.DryRun || rep.Expired != 3 || rep.FixedTTL != 3 || rep.Unparseable != 3 || rep.IndexMembersPruned != 4 || rep.IndexSetsDeleted != 1 {
		t.Fatalf("dry-run report = %+v", rep)
	}
}

func TestCleanupSessionsPayloadOverridesAndNoExpiryRules(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	sessMessy(t, r.Client)
	cfg := config.DefaultSessions()
	cfg.MaxAge, cfg.IdleTimeout = 0, 0 // only TTL repair and index pruning
	rep, err := worker.CleanupSessions(ctx, r.Client, cfg, tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expired != 0 || rep.FixedTTL != 4 { // nottl, zoned, unix, pythonnomicro
		t.Fatalf("report without expiry rules = %+v", rep)
	}
	if ttl := r.Client.TTL(ctx, "session:zoned").Val(); ttl <= 23*time.Hour {
		t.Fatalf("zoned session TTL = %s, want the configured 24h", ttl)
	}
	// The payload's max_age wins over the configuration.
	rep, err = worker.CleanupSessions(ctx, r.Client, cfg, tasks.SessionCleanupArgs{MaxAge: tasks.Duration(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExpiredByAge != 2 { // old (48h) and zoned (30h)
		t.Fatalf("max_age 4h from the payload: %+v", rep)
	}
	if rep.ExpiredByAge+rep.ExpiredByIdle != rep.Expired {
		t.Fatalf("expired %d != by age %d + by idle %d", rep.Expired, rep.ExpiredByAge, rep.ExpiredByIdle)
	}
	if _, err := worker.CleanupSessions(ctx, r.Client, cfg, tasks.SessionCleanupArgs{Pattern: "*"}); err == nil || !strings.Contains(err.Error(), "pattern") {
		t.Fatalf("pattern * accepted: %v", err)
	}
}

// touchBeforeDelete is a hook that, right before the cleanup's delete
// scripts run, makes the application touch one session: the race the
// conditional delete exists for.
type touchBeforeDelete struct {
	app  *redis.Client
	key  string
	once sync.Once
}

func (h *touchBeforeDelete) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *touchBeforeDelete) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *touchBeforeDelete) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "evalsha" && slices.Contains(c.Args(), any(h.key)) {
				h.once.Do(func() {
					h.app.HSet(ctx, h.key, "last_seen", time.Now().UTC().Format("2006-01-02T15:04:05.000000"))
				})
			}
		}
		return next(ctx, cmds)
	}
}

func TestCleanupKeepsSessionTouchedMeanwhile(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	sessMessy(t, r.Client)
	app := redis.NewClient(r.Client.Options())
	defer app.Close()
	wrdb := redis.NewClient(r.Client.Options())
	defer wrdb.Close()
	wrdb.AddHook(&touchBeforeDelete{app: app, key: "session:idle"})
	rep, err := worker.CleanupSessions(ctx, wrdb, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Client.Exists(ctx, "session:idle").Val() != 1 {
		t.Fatal("a session touched between read and delete was deleted")
	}
	if rep.ChangedMeanwhile != 1 || rep.Expired != 2 || rep.ExpiredByIdle != 0 || rep.FixedTTL != 3 {
		t.Fatalf("report = %+v, want 1 changed meanwhile, 2 expired by age", rep)
	}
	if !r.Client.SIsMember(ctx, "user:bob:sessions", "idle").Val() {
		t.Fatal("the kept session lost its index entry")
	}
}

func TestRevokeSessionsViaIndexAndByScan(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	store, err := session.New(r.Client, session.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var alice []string
	for i := 0; i < 3; i++ {
		tok, _ := store.Create(ctx, "alice", nil)
		alice = append(alice, tok)
	}
	bob, _ := store.Create(ctx, "bob", nil)
	r.Client.SAdd(ctx, "user:alice:sessions", bob, "dead") // corrupted index
	cfg := config.DefaultSessions()

	rep, err := worker.RevokeSessions(ctx, r.Client, cfg, "alice", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Via != "index" || rep.Deleted != 3 || rep.IndexMembersRemoved != 5 || rep.Scanned != 0 {
		t.Fatalf("via index: %+v", rep)
	}
	for _, tok := range alice {
		if r.Client.Exists(ctx, "session:"+tok).Val() != 0 {
			t.Fatal("alice's session survived")
		}
	}
	if r.Client.Exists(ctx, "session:"+bob, "user:bob:sessions").Val() != 2 || r.Client.Exists(ctx, "user:alice:sessions").Val() != 0 {
		t.Fatal("bob's session or index was touched, or alice's index survived")
	}

	// An application without index sets: revocation scans.
	for i := 0; i < 5; i++ {
		r.Client.HSet(ctx, fmt.Sprintf("session:carol%d", i), "user_id", "carol", "created_at", "2024-01-15T10:30:00")
	}
	r.Client.HSet(ctx, "session:dan", "user_id", "dan", "created_at", "2024-01-15T10:30:00")
	cfg.BatchSize = 2
	rep, err = worker.RevokeSessions(ctx, r.Client, cfg, "carol", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Via != "scan" || rep.Deleted != 5 || rep.Scanned != 6+1 { // carol×5, dan, bob
		t.Fatalf("by scan: %+v", rep)
	}
	if r.Client.Exists(ctx, "session:dan").Val() != 1 {
		t.Fatal("dan's session deleted by carol's revocation")
	}
	again, err := worker.RevokeSessions(ctx, r.Client, cfg, "carol", false)
	if err != nil || again.Deleted != 0 {
		t.Fatalf("second revoke = %+v, %v; want nothing deleted", again, err)
	}
	if _, err := worker.RevokeSessions(ctx, r.Client, cfg, " ", false); err == nil {
		t.Fatal("blank user id accepted")
	}
}

// sessWorker starts a worker on a private Redis with fast polling.
func sessWorker(t *testing.T, r *testenv.Redis, mutate func(*config.Config)) (*tasks.Client, *asynq.Inspector, config.Config) {
	t.Helper()
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers, cfg.Worker.Concurrency = 1, 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	client := tasks.NewClientFromRedis(r.Client)
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: client}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop within 10s")
		}
	})
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	return client, insp, cfg
}

// sessTaskResult waits for a task to complete and decodes its result into v.
func sessTaskResult(t *testing.T, insp *asynq.Inspector, info *asynq.TaskInfo, v any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti, err := insp.GetTaskInfo(info.Queue, info.ID)
		if err == nil && ti.State == asynq.TaskStateCompleted {
			if err := json.Unmarshal(ti.Result, v); err != nil {
				t.Fatalf("result %q: %v", ti.Result, err)
			}
			return
		}
		if err == nil && ti.LastErr != "" {
			t.Fatalf("task failed: %s", ti.LastErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not completed within 10s (state %v, err %v)", info.ID, ti, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionJobsThroughTheWorker(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	sessMessy(t, r.Client)
	client, insp, cfg := sessWorker(t, r, func(c *config.Config) { c.Sessions.IdleTimeout = time.Hour })

	info, err := client.CleanupSessions(ctx, tasks.SessionCleanupArgs{}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rep worker.SessionCleanupReport
	sessTaskResult(t, insp, info, &rep)
	if rep.Expired != 3 || rep.FixedTTL != 3 || rep.Unparseable != 3 || rep.IndexMembersPruned != 4 {
		t.Fatalf("cleanup result = %+v", rep)
	}

	sub := r.Client.Subscribe(ctx, cfg.Events.Channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	info, err = client.RevokeSessions(ctx, "alice", tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rev worker.SessionRevokeReport
	sessTaskResult(t, insp, info, &rev)
	if rev.Deleted != 1 || rev.Via != "index" || r.Client.Exists(ctx, "session:fresh").Val() != 0 {
		t.Fatalf("revoke result = %+v", rev)
	}
	select {
	case m := <-sub.Channel():
		var ev events.Event
		if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != events.TypeSessionRevoked || ev.UserID != "alice" || ev.KeyCount != 1 || ev.TaskID != info.ID {
			t.Fatalf("event = %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no session.revoked event within 10s")
	}
}

func TestSessionJobsOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	sessMessy(t, cc)
	rep, err := worker.CleanupSessions(ctx, cc, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 10 || rep.Expired != 3 || rep.FixedTTL != 3 || rep.Unparseable != 3 || rep.IndexMembersPruned != 4 || rep.IndexSetsDeleted != 1 {
		t.Fatalf("cluster cleanup = %+v", rep)
	}
	rev, err := worker.RevokeSessions(ctx, cc, config.DefaultSessions(), "carol", false)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Via != "scan" || rev.Deleted != 1 { // session:unix; zoned was expired
		t.Fatalf("cluster revoke = %+v", rev)
	}
}
