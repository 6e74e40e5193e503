package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// TestConsistencyShort is the short history checker: writers through every
// path, cache-aside readers, warms of every kind, synchronous-replication
// stalls and restarts of the change stream and the worker, on a private
// PostgreSQL (wal_level=logical) and a private Redis; after the quiescence
// no cached row may be older than the database's.
func TestConsistencyShort(t *testing.T) {
	pg, err := testenv.StartPostgres()
	testenv.RequireInstance(t, "private PostgreSQL with wal_level=logical", err)
	defer pg.Stop()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := bench.Consistency(ctx, bench.ConsistencyOptions{
		RedisURL: r.URL, Database: config.DatabaseConfig{URL: pg.URL("postgres")},
		Operations: 20000, Keys: 40, Writers: 3, Readers: 3, WriteRate: -1, ReadRate: -1, ReadPath: bench.ReadLeases,
		Stalls: true, StallEvery: time.Second, StallFor: 300 * time.Millisecond,
		Restarts: true, RestartEvery: time.Second, Quiescence: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("operations %d in %.1fs, warms %d, stalls %d, restarts %d, stale after quiescence %d",
		rep.Operations, rep.Seconds, rep.Warms, rep.Stalls, rep.Restarts, rep.StaleAfterQuiescence)
	for _, p := range rep.Paths {
		t.Logf("%-8s writes %5d reads %5d stale reads %4d  staleness p50 %.1f p99 %.1f max %.1f ms; outside outages p99 %.1f max %.1f ms; stale after quiescence %d",
			p.Path, p.Writes, p.Reads, p.StaleReads, p.P50Ms, p.P99Ms, p.MaxMs, p.P99OutsideOutagesMs, p.MaxOutsideOutagesMs, p.StaleAfterQuiescence)
	}
	if rep.Operations < 20000 {
		t.Errorf("ran %d operations, want 20000", rep.Operations)
	}
	if rep.Stalls == 0 || rep.Restarts == 0 {
		t.Errorf("faults: %d stalls, %d restarts; want both", rep.Stalls, rep.Restarts)
	}
	if len(rep.Paths) != 5 {
		t.Errorf("figures for %d paths, want 5 (stream, client, inbox, tag, pattern)", len(rep.Paths))
	}
	if rep.StaleAfterQuiescence != 0 {
		t.Fatalf("%d keys stale after quiescence: %v", rep.StaleAfterQuiescence, rep.StaleKeys)
	}
}
