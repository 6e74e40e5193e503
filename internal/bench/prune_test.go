package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestPruneSmall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	r.Client.Set(ctx, "unrelated", "kept", 0)
	res, err := bench.Prune(ctx, r.Client, bench.PruneOptions{Keys: 3000, Entries: 20, BaselineKeys: 500, BatchSize: 256, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "ratelimit_prune" || res.CachekeeperPerS <= 0 || res.BaselinePerS <= 0 || res.Ratio <= 0 {
		t.Fatalf("result = %+v", res)
	}
	if res.Extra["entries_removed"].(int64) != 3000*10 || res.Extra["ttl_fixed"].(int64) != 1500 {
		t.Fatalf("extra = %v", res.Extra)
	}
	if r.Real {
		if _, ok := res.Extra["bytes_reclaimed"]; !ok {
			t.Fatalf("no bytes_reclaimed on real Redis: %v", res.Extra)
		}
	}
	// Only the scenario's keys are written, and they are gone afterwards.
	if keys := r.Client.Keys(ctx, "*").Val(); len(keys) != 1 || keys[0] != "unrelated" {
		t.Fatalf("keys left after the run: %v", keys)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	}
}

func TestPruneRejectsBadOptions(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, o := range []bench.PruneOptions{{Entries: 1}, {Keys: -1}, {Rounds: -2}} {
		if _, err := bench.Prune(context.Background(), r.Client, o); !errors.Is(err, bench.ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
}

// TestPruneBenchmark prints the figures at full size. It runs only with
// CACHEKEEPER_BENCH_PRUNE=1, on a private redis-server on a loopback TCP
// port (or on CACHEKEEPER_BENCH_REDIS_URL, which must be a server of its
// own). CACHEKEEPER_BENCH_{KEYS,ENTRIES,BATCH,ROUNDS,MEMORY_SAMPLE,RUNS}
// change the sizes.
func TestPruneBenchmark(t *testing.T) {
	if os.Getenv("CACHEKEEPER_BENCH_PRUNE") != "1" {
		t.Skip("set CACHEKEEPER_BENCH_PRUNE=1 to run the full-size prune benchmark")
	}
	var rdb redis.UniversalClient
	if u := os.Getenv("CACHEKEEPER_BENCH_REDIS_URL"); u != "" {
		c, err := (&config.RedisConfig{URL: u}).NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rdb = c
	} else {
		srv, err := bench.StartRedis(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, err := (&config.RedisConfig{URL: srv.URL}).NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rdb = c
	}
	opts := bench.PruneOptions{Keys: envInt("KEYS", 100000), Entries: envInt("ENTRIES", 20), BatchSize: envInt("BATCH", 0), MemorySample: envInt("MEMORY_SAMPLE", 0)}
	opts.Rounds = envInt("ROUNDS", 0)
	for i := 0; i < envInt("RUNS", 1); i++ {
		res, err := bench.Prune(context.Background(), rdb, opts)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(res)
		t.Logf("%s", out)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv("CACHEKEEPER_BENCH_" + name)); err == nil {
		return v
	}
	return def
}
