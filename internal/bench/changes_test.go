package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
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
	testDropActiveSlot(t, pg)
}

// A slot a walsender still holds is dropped all the same: the walsender is
// waited for, then terminated.
func testDropActiveSlot(t *testing.T, pg *testenv.PostgresInstance) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repl, err := pgconn.Connect(ctx, pg.URL("postgres")+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, "ck_held", "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "CREATE PUBLICATION ck_held FOR ALL TABLES"); err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, repl, "ck_held", 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'ck_held'"}}); err != nil {
		t.Fatal(err)
	}
	db, err := sqlx.Open("pgx", pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var active bool
	if err := db.Get(&active, "SELECT active FROM pg_replication_slots WHERE slot_name = 'ck_held'"); err != nil || !active {
		t.Fatalf("slot ck_held active=%v (%v): the test needs it held", active, err)
	}
	start := time.Now()
	if err := bench.DropSlot(ctx, db, "ck_held", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Get(&n, "SELECT count(*) FROM pg_replication_slots"); err != nil || n != 0 {
		t.Fatalf("replication slots left after DropSlot: %d (%v)", n, err)
	}
	t.Logf("a slot held by a walsender dropped in %s", time.Since(start).Round(time.Millisecond))
}
