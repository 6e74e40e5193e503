package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// gatedSpec makes the by_ids query of cache "user" wait, after its snapshot
// is taken, until the advisory lock gate is free: the test holds the lock to
// freeze a warm between its database read and its Redis write.
func gatedSpec(t *testing.T, db *testenv.DB, gate int64) config.CacheSpec {
	t.Helper()
	_, err := db.Exec(fmt.Sprintf(`CREATE FUNCTION gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_advisory_lock_shared(%d); PERFORM pg_advisory_unlock_shared(%d); RETURN true; END $$`, gate, gate))
	if err != nil {
		t.Fatal(err)
	}
	cs := config.DemoCaches()["user"]
	cs.ByIDs = "SELECT id, email, full_name AS name FROM users WHERE id IN (?) AND gate()"
	return cs
}

// holdGate takes the gate's lock on its own connection and returns a
// function that waits until a query is blocked on it, and one that opens it.
func holdGate(t *testing.T, db *testenv.DB, gate int64) (waitBlocked func(), open func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", gate); err != nil {
		t.Fatal(err)
	}
	waitBlocked = func() {
		waitFor(t, 10*time.Second, func() bool {
			var n int
			err := db.Get(&n, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", gate)
			return err == nil && n > 0
		})
	}
	once := sync.Once{}
	open = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", gate)
			_ = conn.Close()
		})
	}
	t.Cleanup(open)
	return waitBlocked, open
}

// TestStaleSetRace first shows the race with a plain cache-aside write (read
// v1; the application writes v2 and invalidates; the late write puts v1 back
// for a whole TTL), then runs the same interleaving through the worker's
// fenced warm and shows the stale write is refused.
func TestStaleSetRace(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	insertUser(t, db, 1, "v1@x", "Ann")
	gate := rand.Int64N(1<<31-1) + 1
	cs := gatedSpec(t, db, gate)
	b := warmSetup(t, db, true, func(c *config.Config) { c.Caches = map[string]config.CacheSpec{"user": cs} })
	ctx := context.Background()
	rc := b.redis.Client
	fn, err := fence.New(rc, keys.Default(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	appUpdate := func(email string) {
		if _, err := db.Exec("UPDATE users SET email = $1 WHERE id = 1", email); err != nil {
			t.Fatal(err)
		}
		if _, err := fn.Invalidate(ctx, []string{"user:1"}); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Unfenced: the naive read-then-HSET of cache-aside.
	spec, err := cachespec.Compile("user", cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(ctx, db.DB); err != nil {
		t.Fatal(err)
	}
	waitBlocked, open := holdGate(t, db, gate)
	read := make(chan *cachespec.Batch, 1)
	go func() {
		bt, err := spec.ReadIDs(ctx, db.DB, []string{"1"})
		if err != nil {
			t.Error(err)
		}
		read <- bt
	}()
	waitBlocked()
	appUpdate("v2@x")
	open()
	e := (<-read).Entries[0]
	rc.Del(ctx, e.Key)
	rc.HSet(ctx, e.Key, e.Fields)
	rc.Expire(ctx, e.Key, time.Hour)
	if got := rc.HGet(ctx, "user:1", "email").Val(); got != "v1@x" {
		t.Fatalf("unfenced write left %q; the race demonstration expected the stale v1@x", got)
	}
	t.Logf("unfenced: cache holds %q while the database holds v2@x (stale for the whole TTL)", "v1@x")
	rc.Del(ctx, "user:1")

	// 2. Fenced, through the worker: same interleaving.
	waitBlocked, open = holdGate(t, db, gate)
	info, err := b.client.WarmCacheIDs(ctx, "user", []string{"1"}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitBlocked()
	appUpdate("v3@x")
	open()
	b.waitTask(t, info, 10*time.Second)
	if n := rc.Exists(ctx, "user:1").Val(); n != 0 {
		t.Fatalf("fenced warm wrote a stale value: %v", rc.HGetAll(ctx, "user:1").Val())
	}
	if got := skippedCount(b, "user"); got != 1 {
		t.Fatalf("skipped writes metric = %v, want 1", got)
	}
	// A warm that starts after the invalidation writes the new row.
	b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}})
	if got := rc.HGet(ctx, "user:1", "email").Val(); got != "v3@x" {
		t.Fatalf("later warm wrote %q, want v3@x", got)
	}
}

// TestRandomizedFencing interleaves database updates (each followed by an
// invalidation, as an application does), and warms through the worker,
// concurrently and at random, with reads slowed by a random sleep inside the
// query. Once quiet, no cached hash may differ from its row; after a final
// warm every hash equals its row.
func TestRandomizedFencing(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	const rows = 12
	for i := 1; i <= rows; i++ {
		insertUser(t, db, i, fmt.Sprintf("u%d@x", i), "v0")
	}
	if _, err := db.Exec(`CREATE FUNCTION jitter() RETURNS boolean LANGUAGE sql VOLATILE AS
$$ SELECT true FROM pg_sleep(random() * 0.003) $$`); err != nil {
		t.Fatal(err)
	}
	b := warmSetup(t, db, true, func(c *config.Config) {
		cs := c.Caches["user"]
		cs.ByIDs = "SELECT id, email, full_name AS name FROM users WHERE id IN (?) AND jitter()"
		c.Caches["user"] = cs
		c.Worker.Concurrency = 6
	})
	ctx := context.Background()
	rc := b.redis.Client
	fn, err := fence.New(rc, keys.Default(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var version, warms atomic.Int64
	check := func(stage string, mustExist bool) int {
		present := 0
		for i := 1; i <= rows; i++ {
			var email, name string
			if err := db.QueryRow("SELECT email, full_name FROM users WHERE id = $1", i).Scan(&email, &name); err != nil {
				t.Fatal(err)
			}
			got := rc.HGetAll(ctx, fmt.Sprintf("user:%d", i)).Val()
			if len(got) == 0 {
				if mustExist {
					t.Errorf("%s: user:%d missing", stage, i)
				}
				continue
			}
			present++
			if got["name"] != name || got["email"] != email || got["id"] != fmt.Sprint(i) {
				t.Errorf("%s: user:%d = %v, row has name %q: stale value in cache", stage, i, got, name)
			}
		}
		return present
	}
	// Several short rounds, each ending quiet and checked: a stale write
	// shows when it is the last thing that happened to a key.
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		stopAt := time.Now().Add(400 * time.Millisecond)
		for u := 0; u < 3; u++ { // the application: update, then invalidate
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stopAt) {
					id := rand.IntN(rows) + 1
					v := fmt.Sprintf("v%d", version.Add(1))
					if _, err := db.Exec("UPDATE users SET full_name = $1 WHERE id = $2", v, id); err != nil {
						t.Error(err)
						return
					}
					if _, err := fn.Invalidate(ctx, []string{fmt.Sprintf("user:%d", id)}); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
				}
			}()
		}
		for g := 0; g < 4; g++ { // warms of random id sets, each waited for
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stopAt) {
					ids := tasks.IDs{}
					for range rand.IntN(4) + 1 {
						ids = append(ids, fmt.Sprint(rand.IntN(rows)+1))
					}
					info, err := b.client.WarmCacheIDs(ctx, "user", ids, tasks.Retention(time.Minute))
					if err != nil {
						t.Error(err)
						return
					}
					warms.Add(1)
					for {
						ti, err := b.inspect.GetTaskInfo(info.Queue, info.ID)
						if err == nil && ti.State == asynq.TaskStateCompleted {
							break
						}
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
		waitIdle(t, b.inspect, tasks.QueueDefault)
		check(fmt.Sprintf("round %d, when quiet", round), false)
	}
	b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: allIDs(rows)})
	check("after a final warm", true)
	skipped := skippedCount(b, "user")
	t.Logf("%d updates, %d warm tasks, %v fenced writes skipped", version.Load(), warms.Load(), skipped)
	if skipped == 0 {
		t.Errorf("no fenced write was ever skipped: the test did not exercise the race (%d updates, %d warms)", version.Load(), warms.Load())
	}
}

func allIDs(n int) tasks.IDs {
	ids := make(tasks.IDs, n)
	for i := range ids {
		ids[i] = fmt.Sprint(i + 1)
	}
	return ids
}

// waitIdle waits until queue has no pending, active, scheduled or retrying job.
func waitIdle(t *testing.T, insp *asynq.Inspector, queue string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() bool {
		qi, err := insp.GetQueueInfo(queue)
		return err == nil && qi.Pending+qi.Active+qi.Scheduled+qi.Retry+qi.Aggregating == 0
	})
}

// TestPatternInvalidationFencesInFlightWarm: a warm frozen between its
// database read and its write; the application updates the rows and runs a
// pattern invalidation through the worker (user 1 cached, user 2 not cached
// at all, so the walk never sees its key); when the warm resumes, neither
// stale value is written, and a warm begun afterwards writes the new rows.
func TestPatternInvalidationFencesInFlightWarm(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	insertUser(t, db, 1, "v1@x", "Ann")
	insertUser(t, db, 2, "w1@x", "Bob")
	gate := rand.Int64N(1<<31-1) + 1
	cs := gatedSpec(t, db, gate)
	b := warmSetup(t, db, true, func(c *config.Config) { c.Caches = map[string]config.CacheSpec{"user": cs} })
	ctx := context.Background()
	rc := b.redis.Client
	rc.HSet(ctx, "user:1", "id", "1", "email", "v1@x")

	waitBlocked, open := holdGate(t, db, gate)
	info, err := b.client.WarmCacheIDs(ctx, "user", []string{"1", "2"}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitBlocked()
	if _, err := db.Exec("UPDATE users SET email = email || '.new'"); err != nil {
		t.Fatal(err)
	}
	b.runTask(t, &tasks.InvalidatePatternArgs{Pattern: "user:*"})
	if n := rc.Exists(ctx, "user:1").Val(); n != 0 {
		t.Fatal("pattern invalidation left user:1")
	}
	open()
	b.waitTask(t, info, 10*time.Second)
	if n := rc.Exists(ctx, "user:1", "user:2").Val(); n != 0 {
		t.Fatalf("the in-flight warm wrote %d stale keys back: %v %v", n, rc.HGetAll(ctx, "user:1").Val(), rc.HGetAll(ctx, "user:2").Val())
	}
	if got := skippedCount(b, "user"); got != 2 {
		t.Fatalf("skipped writes metric = %v, want 2", got)
	}
	b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1", "2"}})
	if a, c := rc.HGet(ctx, "user:1", "email").Val(), rc.HGet(ctx, "user:2", "email").Val(); a != "v1@x.new" || c != "w1@x.new" {
		t.Fatalf("later warm wrote %q and %q, want the new rows", a, c)
	}
}
