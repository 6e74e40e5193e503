package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
		c.Warm.CoalesceGracePeriod = time.Second
		c.Warm.CoalesceMaxDelay = 2 * time.Second
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
	// A burst of single-id warms, each id asked three times.
	for round := 0; round < 3; round++ {
		for i := 1; i <= n; i++ {
			if _, err := b.client.WarmCache(ctx, "user", i); err != nil {
				t.Fatal(err)
			}
		}
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
	// One batch per group: the cache's warms are spread over
	// tasks.WarmGroupShards groups by id, so repeats of an id meet.
	if reads != n || distinctIDs != n || queries > tasks.WarmGroupShards {
		t.Fatalf("300 single-id warms of %d ids: %d rows read (%d distinct) in %d queries; want each id read once, in at most %d queries",
			n, reads, distinctIDs, queries, tasks.WarmGroupShards)
	}
	firstBatches := processed(t, b, tasks.KindWarm)
	if firstBatches > tasks.WarmGroupShards || int(firstBatches) != queries {
		t.Fatalf("%v cache:warm tasks ran for %d queries, want one batch per group (at most %d)", firstBatches, queries, tasks.WarmGroupShards)
	}

	// A burst while the worker runs: few batches, each id read at most once per batch.
	if _, err := db.Exec("DELETE FROM reads"); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 4; round++ {
		for i := 1; i <= 50; i++ {
			if _, err := b.client.WarmCache(ctx, "user", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 15*time.Second, func() bool {
		qi, err := b.inspect.GetQueueInfo(tasks.QueueDefault)
		var r int
		_ = db.QueryRow("SELECT count(DISTINCT id) FROM reads").Scan(&r)
		return err == nil && r == 50 && qi.Pending+qi.Active+qi.Aggregating == 0
	})
	batches := processed(t, b, tasks.KindWarm) - firstBatches
	if err := db.QueryRow("SELECT count(*), count(DISTINCT query) FROM reads").Scan(&reads, &queries); err != nil {
		t.Fatal(err)
	}
	// A burst may straddle an aggregation check: at most two batches per group.
	if batches > 2*tasks.WarmGroupShards || reads > 2*50 || queries != int(batches) {
		t.Fatalf("200 warms while running: %v batches, %d rows read in %d queries; want at most %d batches, each id read at most twice",
			batches, reads, queries, 2*tasks.WarmGroupShards)
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

func TestAggregatorSendsForeignTasksBackAlone(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	insertUser(t, db, 1, "a@x", "Ann")
	b := warmSetup(t, db, false, nil)
	ctx := context.Background()
	if _, err := b.client.WarmCache(ctx, "user", 1); err != nil {
		t.Fatal(err)
	}
	// A producer that put a malformed warm into the group by hand.
	raw := asynq.NewClientFromRedisClient(b.redis.Client)
	_, err := raw.EnqueueContext(ctx, asynq.NewTask(tasks.KindWarm, []byte(`{"cache":"user","idz":[1]}`)),
		asynq.Queue(tasks.QueueDefault), asynq.Group(tasks.WarmGroup("user")))
	if err != nil {
		t.Fatal(err)
	}
	b.start(t)
	waitFor(t, 15*time.Second, func() bool { return b.redis.Client.Exists(ctx, "user:1").Val() == 1 })
	waitFor(t, 15*time.Second, func() bool {
		archived, err := b.inspect.ListArchivedTasks(tasks.QueueDefault)
		return err == nil && len(archived) == 1
	})
	archived, _ := b.inspect.ListArchivedTasks(tasks.QueueDefault)
	if got := archived[0].LastErr; !strings.Contains(got, `"idz"`) {
		t.Fatalf("archived with %q, want the unknown field named", got)
	}
}
