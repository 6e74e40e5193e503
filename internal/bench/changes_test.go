package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// A small run of bench changes on a private PostgreSQL: every id of the
// bulk UPDATE and of the trickle arrives, through the stream and through
// the inbox, and the figures are filled.
func TestChangesScenario(t *testing.T) {
	t.Parallel()
	pg, err := testenv.StartPostgres()
	testenv.RequireInstance(t, "private PostgreSQL with wal_level=logical", err)
	defer pg.Stop()
	r := testenv.NewRedis(t)
	res, err := bench.Changes(context.Background(), bench.ChangesOptions{
		RedisURL: r.URL, Database: config.DatabaseConfig{URL: pg.URL("postgres")},
		Rows: 3000, TrickleRate: 100, TrickleFor: time.Second, Rounds: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Scenario != bench.ScenarioChangesBulk || res[1].Scenario != bench.ScenarioChangesTrickle {
		t.Fatalf("results %+v", res)
	}
	for _, x := range res {
		if x.CachekeeperPerS <= 0 || x.BaselinePerS <= 0 || x.Extra["p99_lag_ms"].(float64) <= 0 {
			t.Errorf("%s: %+v", x.Scenario, x)
		}
		t.Logf("%s: %.0f rows/s (inbox %.0f), p50 %v ms p99 %v ms", x.Scenario, x.CachekeeperPerS, x.BaselinePerS, x.Extra["p50_lag_ms"], x.Extra["p99_lag_ms"])
	}
	// The slot is dropped afterwards.
	db := pg.NewDatabase(t)
	var n int
	if err := db.Get(&n, "SELECT count(*) FROM pg_replication_slots"); err != nil || n != 0 {
		t.Fatalf("replication slots left: %d (%v)", n, err)
	}
}
