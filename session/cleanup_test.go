package session_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
)

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
	testenv.MessySessions(t, r.Client)
	garbled := r.Client.HGetAll(ctx, "session:garbled").Val()

	rep, err := session.Cleanup(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	want := session.CleanupReport{
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
	again, err := session.Cleanup(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{})
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
	testenv.MessySessions(t, r.Client)
	before := sessDump(t, r.Client)
	rep, err := session.Cleanup(ctx, r.Client, sessConfig(), tasks.SessionCleanupArgs{DryRun: true})
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
	testenv.MessySessions(t, r.Client)
	cfg := config.DefaultSessions()
	cfg.MaxAge, cfg.IdleTimeout = 0, 0 // only TTL repair and index pruning
	rep, err := session.Cleanup(ctx, r.Client, cfg, tasks.SessionCleanupArgs{})
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
	rep, err = session.Cleanup(ctx, r.Client, cfg, tasks.SessionCleanupArgs{MaxAge: tasks.Duration(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExpiredByAge != 2 { // old (48h) and zoned (30h)
		t.Fatalf("max_age 4h from the payload: %+v", rep)
	}
	if rep.ExpiredByAge+rep.ExpiredByIdle != rep.Expired {
		t.Fatalf("expired %d != by age %d + by idle %d", rep.Expired, rep.ExpiredByAge, rep.ExpiredByIdle)
	}
	if _, err := session.Cleanup(ctx, r.Client, cfg, tasks.SessionCleanupArgs{Pattern: "*"}); err == nil || !strings.Contains(err.Error(), "pattern") {
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
	testenv.MessySessions(t, r.Client)
	app := redis.NewClient(r.Client.Options())
	defer app.Close()
	wrdb := redis.NewClient(r.Client.Options())
	defer wrdb.Close()
	wrdb.AddHook(&touchBeforeDelete{app: app, key: "session:idle"})
	rep, err := session.Cleanup(ctx, wrdb, sessConfig(), tasks.SessionCleanupArgs{})
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

	rep, err := session.Revoke(ctx, r.Client, cfg, "alice", false)
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
	rep, err = session.Revoke(ctx, r.Client, cfg, "carol", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Via != "scan" || rep.Deleted != 5 || rep.Scanned != 6+1 { // carol×5, dan, bob
		t.Fatalf("by scan: %+v", rep)
	}
	if r.Client.Exists(ctx, "session:dan").Val() != 1 {
		t.Fatal("dan's session deleted by carol's revocation")
	}
	again, err := session.Revoke(ctx, r.Client, cfg, "carol", false)
	if err != nil || again.Deleted != 0 {
		t.Fatalf("second revoke = %+v, %v; want nothing deleted", again, err)
	}
	if _, err := session.Revoke(ctx, r.Client, cfg, " ", false); err == nil {
		t.Fatal("blank user id accepted")
	}
}

func TestSessionJobsOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	testenv.MessySessions(t, cc)
	rep, err := session.Cleanup(ctx, cc, sessConfig(), tasks.SessionCleanupArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 10 || rep.Expired != 3 || rep.FixedTTL != 3 || rep.Unparseable != 3 || rep.IndexMembersPruned != 4 || rep.IndexSetsDeleted != 1 {
		t.Fatalf("cluster cleanup = %+v", rep)
	}
	rev, err := session.Revoke(ctx, cc, config.DefaultSessions(), "carol", false)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Via != "scan" || rev.Deleted != 1 { // session:unix; zoned was expired
		t.Fatalf("cluster revoke = %+v", rev)
	}
}
