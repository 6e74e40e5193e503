package ratelimit_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func rlConfig() config.RateLimitsConfig {
	cfg := config.DefaultRateLimits()
	cfg.MemorySample = 1
	cfg.BatchSize = 2
	return cfg
}

func TestPruneRateLimitsMessyData(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	testenv.MessyRateLimits(t, r.Client, testenv.ServerNow(t, r.Client))

	rep, err := ratelimit.Prune(ctx, r.Client, rlConfig(), tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pattern != "rate_limit:*" || rep.Scanned != 4 || rep.EntriesRemoved != 2+3+0+1 || rep.KeysDeleted != 1 || rep.TTLFixed != 1 || rep.Skipped != 0 {
		t.Fatalf("report = %+v", rep)
	}
	if n := r.Client.ZCard(ctx, "rate_limit:mixed").Val(); n != 2 {
		t.Errorf("mixed holds %d entries, want the 2 recent ones", n)
	}
	if r.Client.Exists(ctx, "rate_limit:dead").Val() != 0 {
		t.Error("a set of only old entries survived")
	}
	if ttl := r.Client.TTL(ctx, "rate_limit:nottl").Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("nottl TTL = %s, want the window", ttl)
	}
	if n := r.Client.ZCard(ctx, "rate_limit:guide").Val(); n != 1 {
		t.Errorf("guide holds %d entries, want 1", n)
	}
	if r.Client.Exists(ctx, "rate_limit:hash", "other:old").Val() != 2 || r.Client.TTL(ctx, "other:old").Val() != -1 {
		t.Error("a key of another type or outside the pattern was touched")
	}
	if rep.BytesReclaimed == nil || *rep.BytesReclaimed <= 0 || rep.BytesMeasuredKeys != 4 || *rep.BytesReclaimed != rep.BytesMeasured {
		t.Errorf("bytes: reclaimed %v, measured %d on %d keys; want > 0, every key measured", rep.BytesReclaimed, rep.BytesMeasured, rep.BytesMeasuredKeys)
	}

	// At-least-once delivery: running again changes nothing.
	again, err := ratelimit.Prune(ctx, r.Client, rlConfig(), tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Scanned != 3 || again.EntriesRemoved != 0 || again.KeysDeleted != 0 || again.TTLFixed != 0 {
		t.Fatalf("second run = %+v", again)
	}
}

func TestPruneRateLimitsPayloadAndMilliseconds(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	now := testenv.ServerNow(t, r.Client) * 1000
	for i, age := range []float64{50_000, 20_000, 5_000, 100} { // milliseconds
		r.Client.ZAdd(ctx, "api:rl:k", redis.Z{Score: now - age, Member: strconv.Itoa(i)})
	}
	r.Client.ZAdd(ctx, "rate_limit:x", redis.Z{Score: 1, Member: "ancient"})
	cfg := rlConfig()
	cfg.ScoreUnit = "ms"
	cfg.MemorySample = 0
	// The payload's pattern and window (10s) win over the configuration.
	rep, err := ratelimit.Prune(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{Pattern: "api:rl:*", Window: tasks.Duration(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pattern != "api:rl:*" || rep.Window != "10s" || rep.Scanned != 1 || rep.EntriesRemoved != 2 || rep.TTLFixed != 1 || rep.BytesReclaimed != nil {
		t.Fatalf("report = %+v", rep)
	}
	if ttl := r.Client.TTL(ctx, "api:rl:k").Val(); ttl <= 5*time.Second || ttl > 10*time.Second {
		t.Fatalf("TTL = %s, want the payload's 10s window", ttl)
	}
	if r.Client.Exists(ctx, "rate_limit:x").Val() != 1 {
		t.Fatal("a key outside the payload's pattern was pruned")
	}
	if _, err := ratelimit.Prune(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{Pattern: "*"}); err == nil {
		t.Fatal("pattern * accepted")
	}
}

// The cut-off is the Redis server's TIME, not the worker's clock: on a
// server whose clock is a year behind, entries a year old by the worker's
// clock but recent by the server's are kept. A server without MEMORY USAGE
// (some managed services disable it) reports no bytes and still prunes.
func TestPruneRateLimitsUsesServerClock(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	serverNow := time.Now().Add(-365 * 24 * time.Hour)
	m.SetTime(serverNow)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	rdb.AddHook(noMemoryCommand{})
	ctx := context.Background()
	s := float64(serverNow.Unix())
	rdb.ZAdd(ctx, "rate_limit:c", redis.Z{Score: s - 30, Member: "recent"}, redis.Z{Score: s - 90, Member: "old"})
	rep, err := ratelimit.Prune(ctx, rdb, rlConfig(), tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rdb.ZRange(ctx, "rate_limit:c", 0, -1).Val(); len(got) != 1 || got[0] != "recent" {
		t.Fatalf("members = %v, want [recent]: the cut-off must come from the server clock", got)
	}
	if rep.EntriesRemoved != 1 || rep.BytesReclaimed != nil {
		t.Fatalf("report = %+v", rep)
	}
}

// noMemoryCommand makes MEMORY fail as on a server that disabled it.
type noMemoryCommand struct{}

func (noMemoryCommand) DialHook(next redis.DialHook) redis.DialHook { return next }
func (noMemoryCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "memory" {
			cmd.SetErr(errors.New("ERR unknown command 'MEMORY'"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}
func (noMemoryCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestPruneRateLimitsOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	testenv.MessyRateLimits(t, cc, testenv.ServerNow(t, cc))
	cfg := rlConfig()
	cfg.BatchSize = 3 // keys of several slots in one batch
	rep, err := ratelimit.Prune(ctx, cc, cfg, tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 4 || rep.EntriesRemoved != 6 || rep.KeysDeleted != 1 || rep.TTLFixed != 1 || rep.BytesMeasuredKeys != 4 {
		t.Fatalf("cluster report = %+v", rep)
	}
}

// The guide's limiter (10 a minute, rate_limit:{client}) and a login
// limiter (5 an hour, rate_limit:login:{client}) side by side: pruning with
// the default one-minute window never lets a sixth login attempt through.
// A login key whose TTL is longer than the minute is left alone; with the
// login pattern given its own window (rate_limits.windows) even a key
// about to expire keeps the attempts its hour still counts.
func TestPruneLeavesLongerWindowsAlone(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	guide, err := ratelimit.New(r.Client, ratelimit.Config{Key: "rate_limit:{client}", Limit: 10, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	login, err := ratelimit.New(r.Client, ratelimit.Config{Key: "rate_limit:login:{client}", Limit: 5, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := testenv.ServerNow(t, r.Client)
	attempts := func(key string, age float64, ttl time.Duration) {
		for i := range 5 {
			r.Client.ZAdd(ctx, key, redis.Z{Score: now - age - float64(i), Member: key + strconv.Itoa(i)})
		}
		r.Client.PExpire(ctx, key, ttl)
	}
	attempts("rate_limit:login:alice", 600, time.Hour)     // 10 minutes ago, as the limiter left them
	attempts("rate_limit:login:bob", 3500, 30*time.Second) // 58 minutes ago: the key expires in 30s
	attempts("rate_limit:203.0.113.9", 90, time.Minute)    // the guide's: older than its minute
	denied := func(who string) {
		t.Helper()
		res, err := login.Allow(ctx, who)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			t.Fatalf("sixth login attempt of %s allowed within the hour", who)
		}
	}

	cfg := config.DefaultRateLimits()
	rep, err := ratelimit.Prune(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default window only: %+v", rep)
	if rep.KeptLongerWindow != 1 || r.Client.ZCard(ctx, "rate_limit:login:alice").Val() != 5 {
		t.Fatalf("alice's login attempts pruned to the guide's minute: report %+v", rep)
	}
	if r.Client.Exists(ctx, "rate_limit:203.0.113.9").Val() != 0 {
		t.Errorf("the guide's old entries were not pruned")
	}
	denied("alice")

	attempts("rate_limit:login:bob", 3500, 30*time.Second)
	cfg.Windows = []config.RateLimitWindow{{Pattern: "rate_limit:login:*", Window: time.Hour}}
	rep, err = ratelimit.Prune(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with rate_limits.windows: %+v (login pass %+v)", rep, rep.Windows)
	if n := r.Client.ZCard(ctx, "rate_limit:login:bob").Val(); n != 5 {
		t.Fatalf("bob holds %d attempts after pruning; want 5 (his hour still counts them)", n)
	}
	if len(rep.Windows) != 1 || rep.Windows[0].Scanned != 2 || rep.Windows[0].Window != "1h0m0s" {
		t.Errorf("login pass %+v; want both login keys pruned with their hour", rep.Windows)
	}
	denied("bob")
	denied("alice")
	if res, err := guide.Allow(ctx, "203.0.113.9"); err != nil || !res.Allowed {
		t.Errorf("the guide's limiter: %+v, %v", res, err)
	}
}
