package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// TestStampedeScenarios runs the stampede benchmark small and checks what
// does not depend on the machine: a burst through leases costs the database
// one query, the slow-fill race leaves no stale key through leases, and
// refresh-ahead misses fewer expiries than the plain TTL.
func TestStampedeScenarios(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	db := testenv.Postgres(t)
	res, err := bench.Stampede(context.Background(), bench.StampedeOptions{
		RedisURL: r.URL, Database: db.Config, Readers: 50, Bursts: 2, RaceKeys: 40, RaceWindow: 300 * time.Millisecond,
		TTL: 800 * time.Millisecond, Duration: 2 * time.Second, ReadRate: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Scenario != "naive" || res[1].Scenario != "leases" || res[2].Scenario != "refresh_ahead" {
		t.Fatalf("scenarios = %+v", res)
	}
	for _, x := range res {
		t.Logf("%s: %v", x.Scenario, x.Extra)
	}
	naive, leases, ra := res[0].Extra, res[1].Extra, res[2].Extra
	if q := leases["db_queries_max"].(float64); q != 1 {
		t.Errorf("leases: %v database queries in a burst of 50, want 1", q)
	}
	if q := naive["db_queries"].(float64); q < 1 {
		t.Errorf("naive: %v database queries: the counter counts nothing", q)
	}
	if s := leases["stale_keys"].(int); s != 0 {
		t.Errorf("leases: %d stale keys after the slow-fill race, want 0", s)
	}
	if m, b := ra["misses_at_expiry"].(int64), ra["baseline_misses_at_expiry"].(int64); m >= b || b < 1 {
		t.Errorf("refresh_ahead: %d misses at expiry, baseline %d; want fewer, and a baseline that expired", m, b)
	}
	if n := r.Client.DBSize(context.Background()).Val(); n > 5 {
		keys := r.Client.Keys(context.Background(), "*").Val()
		t.Errorf("%d keys left after the benchmark: %v", n, keys[:min(len(keys), 10)])
	}
}
