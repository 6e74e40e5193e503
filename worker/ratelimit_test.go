package worker_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/redis/go-redis/v9"
)

// rlMessy writes sliding-window sets as applications leave them, with
// scores in Unix seconds relative to now (the server's clock):
//   - rate_limit:mixed: two old entries, two recent, a TTL;
//   - rate_limit:dead: only old entries and no TTL (never allowed to expire);
//   - rate_limit:nottl: only recent entries, no TTL;
//   - rate_limit:guide: the FastAPI guide's members named after the second,
//     so requests of one second collapsed into one member;
//   - rate_limit:hash (a hash) and other:old (outside the pattern), untouched.
func rlMessy(t *testing.T, rdb redis.UniversalClient, now float64) {
	t.Helper()
	ctx := context.Background()
	z := func(key string, ttl time.Duration, ages ...float64) {
		for i, age := range ages {
			if err := rdb.ZAdd(ctx, key, redis.Z{Score: now - age, Member: "m" + strconv.Itoa(i)}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if ttl > 0 {
			rdb.Expire(ctx, key, ttl)
		}
	}
	z("rate_limit:mixed", time.Minute, 300, 61, 10, 1)
	z("rate_limit:dead", 0, 3600, 600, 90)
	z("rate_limit:nottl", 0, 30, 20, 5)
	sec := strconv.FormatFloat(now, 'f', 0, 64)
	old := strconv.FormatFloat(now-100, 'f', 0, 64)
	rdb.ZAdd(ctx, "rate_limit:guide", redis.Z{Score: now - 100, Member: old}, redis.Z{Score: now, Member: sec})
	rdb.Expire(ctx, "rate_limit:guide", time.Minute)
	rdb.HSet(ctx, "rate_limit:hash", "count", 3)
	z("other:old", 0, 3600)
}

func rlConfig() config.RateLimitsConfig {
	cfg := config.DefaultRateLimits()
	cfg.MemorySample = 1
	cfg.BatchSize = 2
	return cfg
}

func serverNow(t *testing.T, rdb redis.UniversalClient) float64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return float64(now.Unix())
}

func TestPruneRateLimitsMessyData(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	rlMessy(t, r.Client, serverNow(t, r.Client))

	rep, err := worker.PruneRateLimits(ctx, r.Client, rlConfig(), tasks.RateLimitPruneArgs{})
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
	again, err := worker.PruneRateLimits(ctx, r.Client, rlConfig(), tasks.RateLimitPruneArgs{})
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
	now := serverNow(t, r.Client) * 1000
	for i, age := range []float64{50_000, 20_000, 5_000, 100} { // milliseconds
		r.Client.ZAdd(ctx, "api:rl:k", redis.Z{Score: now - age, Member: strconv.Itoa(i)})
	}
	r.Client.ZAdd(ctx, "rate_limit:x", redis.Z{Score: 1, Member: "ancient"})
	cfg := rlConfig()
	cfg.ScoreUnit = "ms"
	cfg.MemorySample = 0
	// The payload's pattern and window (10s) win over the configuration.
	rep, err := worker.PruneRateLimits(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{Pattern: "api:rl:*", Window: tasks.Duration(10 * time.Second)})
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
	if _, err := worker.PruneRateLimits(ctx, r.Client, cfg, tasks.RateLimitPruneArgs{Pattern: "*"}); err == nil {
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
	rep, err := worker.PruneRateLimits(ctx, rdb, rlConfig(), tasks.RateLimitPruneArgs{})
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

func TestPruneRateLimitsThroughTheWorker(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	rlMessy(t, r.Client, serverNow(t, r.Client))
	client, insp, _ := sessWorker(t, r, nil)
	info, err := client.PruneRateLimits(ctx, tasks.RateLimitPruneArgs{}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	sessTaskResult(t, insp, info, &rep)
	for field, want := range map[string]float64{"scanned": 4, "entries_removed": 6, "keys_deleted": 1, "ttl_fixed": 1} {
		if rep[field] != want {
			t.Errorf("result %s = %v, want %v (result %v)", field, rep[field], want, rep)
		}
	}
	if _, ok := rep["bytes_reclaimed"]; !ok {
		t.Errorf("result has no bytes_reclaimed: %v", rep)
	}
}

func TestPruneRateLimitsOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	rlMessy(t, cc, serverNow(t, cc))
	cfg := rlConfig()
	cfg.BatchSize = 3 // keys of several slots in one batch
	rep, err := worker.PruneRateLimits(ctx, cc, cfg, tasks.RateLimitPruneArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 4 || rep.EntriesRemoved != 6 || rep.KeysDeleted != 1 || rep.TTLFixed != 1 || rep.BytesMeasuredKeys != 4 {
		t.Fatalf("cluster report = %+v", rep)
	}
}
