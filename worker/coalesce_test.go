package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// countedReads makes cache "user" note every row it reads, with the query it
// was read by, in the table reads (PostgreSQL).
func countedReads(t *testing.T, db *testenv.DB) func(*config.Config) {
	t.Helper()
	for _, q := range []string{
		"CREATE TABLE reads (id BIGINT NOT NULL, query TEXT NOT NULL)",
		`CREATE FUNCTION note_read(i BIGINT) RETURNS boolean LANGUAGE sql VOLATILE AS $$
INSERT INTO reads VALUES (i, pg_backend_pid()::text || '@' || statement_timestamp()::text); SELECT true $$`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return func(c *config.Config) {
		cs := c.Caches["user"]
		cs.ByIDs = "SELECT id, email, full_name AS name FROM users WHERE id IN (?) AND note_read(id)"
		c.Caches["user"] = cs
		c.Warm.CoalesceInterval = time.Second
		c.Warm.CoalesceMaxSize = 1000
	}
}

func TestSingleIDWarmsAreCoalesced(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	const n = 100
	if _, err := db.Exec(`INSERT INTO users (id, email, full_name, org_id)
SELECT i, 'u' || i || '@x', 'User ' || i, 1 FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
	b := warmSetup(t, db, false, countedReads(t, db))
	ctx := context.Background()
	// A burst of single-id warms before any worker runs, each id asked three times.
	for round := 0; round < 3; round++ {
		for i := 1; i <= n; i++ {
			if err := b.client.WarmCache(ctx, "user", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if qi, err := b.inspect.GetQueueInfo(tasks.QueueDefault); err == nil && qi.Size > 0 {
		t.Fatalf("WarmCache enqueued %d jobs; it should only add ids to the pending set", qi.Size)
	}
	b.start(t)
	waitFor(t, 15*time.Second, func() bool {
		return b.redis.Client.Exists(ctx, "user:1", fmt.Sprintf("user:%d", n)).Val() == 2 &&
			countKeys(t, b, "user:*") == n
	})
	waitIdle(t, b.inspect, tasks.QueueDefault)
	var reads, distinctIDs, queries int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT id), count(DISTINCT query) FROM reads").Scan(&reads, &distinctIDs, &queries); err != nil {
		t.Fatal(err)
	}
	if reads != n || distinctIDs != n || queries != 1 {
		t.Fatalf("300 single-id warms of %d ids: %d rows read (%d distinct) in %d queries; want each id read once, in one query",
			n, reads, distinctIDs, queries)
	}
	if got := processed(t, b, tasks.KindWarm); got != 1 {
		t.Fatalf("%v cache:warm jobs ran, want one coalesced job", got)
	}
	if p := b.redis.Client.ZCard(ctx, keys.Default().WarmPending("user")).Val(); p != 0 {
		t.Fatalf("%d ids still pending after their job ran", p)
	}

	// A burst while the worker runs: it may straddle one pass of the
	// coalescer (every second here), so at most two jobs and two reads an id.
	if _, err := db.Exec("DELETE FROM reads"); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 4; round++ {
		for i := 1; i <= 50; i++ {
			if err := b.client.WarmCache(ctx, "user", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 15*time.Second, func() bool {
		var r int
		_ = db.QueryRow("SELECT count(DISTINCT id) FROM reads").Scan(&r)
		return r == 50 && b.redis.Client.ZCard(ctx, keys.Default().WarmPending("user")).Val() == 0
	})
	waitIdle(t, b.inspect, tasks.QueueDefault)
	batches := processed(t, b, tasks.KindWarm) - 1
	if err := db.QueryRow("SELECT count(*), count(DISTINCT query) FROM reads").Scan(&reads, &queries); err != nil {
		t.Fatal(err)
	}
	if batches > 2 || reads > 2*50 || queries != int(batches) {
		t.Fatalf("200 warms while running: %v jobs, %d rows read in %d queries; want at most 2 jobs, each id read at most twice",
			batches, reads, queries)
	}
}

func processed(t *testing.T, b *warmBundle, kind string) float64 {
	return testutil.ToFloat64(counter(t, b.reg, kind, worker.OutcomeSuccess))
}

func countKeys(t *testing.T, b *warmBundle, pattern string) int {
	t.Helper()
	var n int
	iter := b.redis.Client.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// Ids left pending while no worker ran are jobs before the servers' first
// poll: with a coalescer pass only every minute and servers that sleep 2-6s
// after finding their queues empty, the backlog is still warmed at once.
func TestWorkerTurnsTheBacklogIntoJobsBeforeItsServersPoll(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	insertUser(t, db, 1, "a@x", "Ann")
	b := warmSetup(t, db, false, func(c *config.Config) {
		c.Warm.CoalesceInterval = time.Minute
		c.Worker.TaskCheckInterval = 4 * time.Second
		c.Worker.FastLane.Queue = ""
	})
	ctx := context.Background()
	if err := b.client.WarmCache(ctx, "user", 1); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	waitFor(t, 1900*time.Millisecond, func() bool { return b.redis.Client.Exists(ctx, "user:1").Val() == 1 })
}
