package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// TestWarmScenarios runs the warm benchmark on a small table and checks the
// shape of its results (the figures themselves depend on the machine).
func TestWarmScenarios(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	db := testenv.SQLite(t)
	res, err := bench.Warm(context.Background(), bench.WarmOptions{
		RedisURL: r.URL, Database: db.Config, Rows: 3000, PerKeyRows: 300, Rounds: 1, Servers: 2, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Scenario != "warm_per_key" || res[1].Scenario != "warm_coalesced" || res[2].Scenario != "warm_all" {
		t.Fatalf("scenarios = %+v", res)
	}
	for _, x := range res {
		if x.CachekeeperPerS <= 0 || x.BaselinePerS <= 0 {
			t.Errorf("%s: rates %v / %v", x.Scenario, x.CachekeeperPerS, x.BaselinePerS)
		}
	}
	if v, _ := res[1].Extra["running_worker_per_s"].(float64); v <= 0 {
		t.Errorf("warm_coalesced has no running-worker figure: %+v", res[1].Extra)
	}
	if res[2].CeilingPerS <= 0 {
		t.Errorf("warm_all has no ceiling: %+v", res[2])
	}
	// Everything the run created is gone: keys, queues, fences.
	if n := r.Client.DBSize(context.Background()).Val(); n > 5 {
		keys := r.Client.Keys(context.Background(), "*").Val()
		t.Errorf("%d keys left after the benchmark: %v", n, keys[:min(len(keys), 10)])
	}
}

// TestWarmBenchmark is the full measurement, run on demand:
//
//	CACHEKEEPER_BENCH_WARM_ROWS=100000 go test -run TestWarmBenchmark -v -timeout 20m ./internal/bench/
//
// It uses a private redis-server (unix socket) and PostgreSQL (CACHEKEEPER_TEST_DATABASE_URL
// or the local default); it prints one JSON object per scenario.
func TestWarmBenchmark(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("CACHEKEEPER_BENCH_WARM_ROWS"))
	if rows == 0 {
		t.Skip("set CACHEKEEPER_BENCH_WARM_ROWS to run the full warm benchmark")
	}
	srv := testenv.NewRedis(t)
	dbURL := os.Getenv("CACHEKEEPER_TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = testenv.DefaultPostgresURL
	}
	perKey, _ := strconv.Atoi(os.Getenv("CACHEKEEPER_BENCH_WARM_PER_KEY"))
	maxSize, _ := strconv.Atoi(os.Getenv("CACHEKEEPER_BENCH_WARM_MAX_SIZE"))
	res, err := bench.Warm(context.Background(), bench.WarmOptions{
		RedisURL: srv.URL, Database: config.DatabaseConfig{URL: dbURL}, Rows: rows, PerKeyRows: perKey, CoalesceMaxSize: maxSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		b, _ := json.Marshal(r)
		t.Log(string(b))
	}
}
