package changes_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// forEachKind runs test on PostgreSQL and on MariaDB, in parallel.
func forEachKind(t *testing.T, test func(t *testing.T, kind string)) {
	t.Parallel()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

func TestUpdateInvalidatesItsKeyWithin2s(t *testing.T) {
	forEachKind(t, testUpdateInvalidatesItsKeyWithin2s)
}

func testUpdateInvalidatesItsKeyWithin2s(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 3)
	b.start(t)
	start := time.Now()
	mustExec(t, b.db, "UPDATE users SET email = 'new@x' WHERE id = 2")
	took := waitFor(t, 2*time.Second, func() bool { return b.exists("user:2") == 0 })
	t.Logf("UPDATE committed -> user:2 invalidated in %s", time.Since(start).Round(time.Millisecond))
	_ = took
	if b.exists("user:1", "user:3") != 2 {
		t.Fatal("keys of unchanged rows were invalidated")
	}
	if got := b.batches(tasks.KindInvalidate); got != 1 {
		t.Fatalf("cache:invalidate jobs = %v, want 1", got)
	}
	// A fence was advanced: the invalidation is the fenced one.
	if b.rdb.Exists(context.Background(), "cachekeeper:fence:{user:2}").Val() != 1 {
		t.Fatal("no fence for user:2: the invalidation was not fenced")
	}
}

func TestInsertDeleteAndIDChange(t *testing.T) { forEachKind(t, testInsertDeleteAndIDChange) }

func testInsertDeleteAndIDChange(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 3)
	b.start(t)
	// DELETE names the old id (primary key: in the default replica identity).
	mustExec(t, b.db, "DELETE FROM users WHERE id = 1")
	waitFor(t, 2*time.Second, func() bool { return b.exists("user:1") == 0 })
	// UPDATE of the id column: the old and the new key.
	b.cacheKeys(t, 100, 100)
	mustExec(t, b.db, "UPDATE users SET id = 100 WHERE id = 2")
	waitFor(t, 2*time.Second, func() bool { return b.exists("user:2", "user:100") == 0 })
	// INSERT of an id with a (stale) cached key.
	b.cacheKeys(t, 7, 7)
	mustExec(t, b.db, "INSERT INTO users VALUES (7, 'seven@x', 'x', 1)")
	waitFor(t, 2*time.Second, func() bool { return b.exists("user:7") == 0 })
	if b.exists("user:3") != 1 {
		t.Fatal("user:3 was invalidated though its row did not change")
	}
}

func TestMultiRowTransactionIsCoalesced(t *testing.T) {
	forEachKind(t, testMultiRowTransactionIsCoalesced)
}

func testMultiRowTransactionIsCoalesced(t *testing.T, kind string) {
	b := setupOn(t, kind, func(_ *config.Config, sc *changes.Config) { sc.BatchSize = 2000 })
	const n = 5000
	b.seed(t, n)
	b.start(t)
	tx, err := b.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE users SET full_name = 'v1' WHERE id <= 2500"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("DELETE FROM users WHERE id > 2500"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, func() bool {
		n, _ := b.rdb.DBSize(context.Background()).Result()
		return b.exists("user:1", "user:2500", "user:2501", "user:5000") == 0 && countKeys(t, b, "user:*") == 0 && n > 0
	})
	t.Logf("%d rows in one transaction invalidated in %s", n, time.Since(start).Round(time.Millisecond))
	// 5000 ids in batches of 2000: 3 jobs, not 5000.
	if got := b.batches(tasks.KindInvalidate); got != 3 {
		t.Fatalf("cache:invalidate jobs = %v, want 3 (5000 ids in batches of 2000)", got)
	}
}

func TestTagsAndTruncate(t *testing.T) { forEachKind(t, testTagsAndTruncate) }

func testTagsAndTruncate(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	ctx := context.Background()
	mustExec(t, b.db, "INSERT INTO memberships VALUES (1, 7), (2, 8)")
	b.seed(t, 2)
	// Keys carrying tag org:7 (as a warm with tags: would have joined them).
	b.rdb.SAdd(ctx, "cachekeeper:tag:org:7", "user:1")
	b.rdb.SAdd(ctx, "cachekeeper:tag:org:8", "user:2")
	b.start(t)
	// DELETE with REPLICA IDENTITY FULL carries org_id: tag org:7 goes.
	mustExec(t, b.db, "DELETE FROM memberships WHERE id = 1")
	waitFor(t, 2*time.Second, func() bool { return b.exists("user:1") == 0 })
	if b.exists("user:2") != 1 {
		t.Fatal("user:2 (tag org:8) was invalidated by a change of org 7")
	}
	if got := b.batches(tasks.KindInvalidateTag); got != 1 {
		t.Fatalf("cache:invalidate_tag jobs = %v, want 1", got)
	}
	// TRUNCATE invalidates the whole cache by pattern.
	b.cacheKeys(t, 1, 50)
	b.rdb.Set(ctx, "other:1", "x", 0)
	mustExec(t, b.db, "TRUNCATE users")
	waitFor(t, 5*time.Second, func() bool { return countKeys(t, b, "user:*") == 0 })
	if b.exists("other:1") != 1 {
		t.Fatal("TRUNCATE users deleted a key outside the cache")
	}
}

func TestKilledReaderCatchesUp(t *testing.T) { forEachKind(t, testKilledReaderCatchesUp) }

func testKilledReaderCatchesUp(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 10)
	h := b.startHelper(t, "first")
	b.waitStreaming(t)
	mustExec(t, b.db, "UPDATE users SET email = 'a' WHERE id = 1")
	waitFor(t, 10*time.Second, func() bool { return b.exists("user:1") == 0 })
	h.kill(t, syscall.SIGKILL)
	mustExec(t, b.db, "UPDATE users SET email = 'b' WHERE id IN (2, 3)")
	mustExec(t, b.db, "DELETE FROM users WHERE id = 4")
	time.Sleep(300 * time.Millisecond)
	if b.exists("user:2", "user:3", "user:4") != 3 {
		t.Fatal("keys changed while no reader ran")
	}
	h2 := b.startHelper(t, "second")
	took := waitFor(t, 20*time.Second, func() bool { return b.exists("user:2", "user:3", "user:4") == 0 })
	t.Logf("changes made while the reader was dead applied %s after it restarted", took.Round(time.Millisecond))
	if b.exists("user:5") != 1 {
		t.Fatal("user:5 was invalidated though its row did not change")
	}
	h2.kill(t, syscall.SIGTERM)
}

func TestReplicaTakesOver(t *testing.T) { forEachKind(t, testReplicaTakesOver) }

func testReplicaTakesOver(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 5)
	ctx := context.Background()
	a := b.startHelper(t, "replica-a")
	b.waitStreaming(t)
	c := b.startHelper(t, "replica-c")
	st, _ := b.stream.Status(ctx)
	holder, waiting := a, c
	if st.Holder == "replica-c" {
		holder, waiting = c, a
	}
	time.Sleep(500 * time.Millisecond)
	if st, _ = b.stream.Status(ctx); st.Holder == "" {
		t.Fatal("no holder")
	}
	killed := time.Now()
	holder.kill(t, syscall.SIGKILL)
	mustExec(t, b.db, "UPDATE users SET email = 'x' WHERE id = 1")
	took := waitFor(t, 10*time.Second, func() bool { return b.exists("user:1") == 0 })
	st, _ = b.stream.Status(ctx)
	t.Logf("holder killed; the waiting replica (now %q) applied the next change %s later (lease TTL 2s)", st.Holder, took.Round(time.Millisecond))
	if time.Since(killed) > 8*time.Second {
		t.Fatalf("takeover took %s", time.Since(killed))
	}
	waiting.kill(t, syscall.SIGTERM)
}

func TestStatusReportsPositionLagAndHolder(t *testing.T) {
	forEachKind(t, testStatusReportsPositionLagAndHolder)
}

func testStatusReportsPositionLagAndHolder(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 1)
	b.start(t)
	mustExec(t, b.db, "UPDATE users SET email = 'y' WHERE id = 1")
	waitFor(t, 2*time.Second, func() bool { return b.exists("user:1") == 0 })
	var st changes.Status
	waitFor(t, 5*time.Second, func() bool {
		var err error
		st, err = b.stream.Status(context.Background())
		return err == nil && st.Exists && st.Holder != "" && !st.ReportedAt.IsZero() && st.Position != ""
	})
	t.Logf("status: %+v", st)
	if st.Database != kind || (kind == "postgres" && !st.SlotActive) || st.ServerPosition == "" || st.LagBytes < 0 {
		t.Fatalf("status %+v", st)
	}
	if got := b.batches(tasks.KindInvalidate); got < 1 {
		t.Fatalf("batches metric = %v", got)
	}
	// The stream is listed for the worker's /caches page.
	names, err := changes.Streams(context.Background(), b.rdb, "")
	if err != nil || len(names) != 1 || names[0] != st.Stream {
		t.Fatalf("Streams = %q, %v; want [%s]", names, err, st.Stream)
	}
}

// A batch enqueued in the background while the transaction is still being
// decoded fails: the transaction is not confirmed, the stream reconnects
// and replays it, and every row's key is invalidated (at least once).
func TestFailedBackgroundEnqueueReplaysTheTransaction(t *testing.T) {
	t.Parallel()
	// The job of the last batch (ids 4001-5000, the heap's order) fails:
	// only the commit waits for it.
	fail := &failScriptOnce{with: `"5000"`}
	b := setup(t, func(cfg *config.Config, sc *changes.Config) {
		rdb, err := cfg.Redis.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rdb.Close() })
		rdb.AddHook(fail)
		sc.Client = tasks.NewClientFromRedis(rdb)
		sc.BatchSize = 1000
	})
	const n = 5000
	b.seed(t, n)
	b.start(t)
	mustExec(t, b.db, "UPDATE users SET full_name = 'v1'")
	waitFor(t, 15*time.Second, func() bool { return countKeys(t, b, "user:*") == 0 })
	if fail.failed.Load() != 1 {
		t.Fatalf("%d enqueues failed, want the one injected", fail.failed.Load())
	}
	// Four jobs, the fifth failed, then the whole transaction again.
	if got := b.batches(tasks.KindInvalidate); got != 9 {
		t.Fatalf("cache:invalidate jobs enqueued = %v, want 4, then the transaction's 5 again after the failure", got)
	}
}

// failScriptOnce fails the first script call (EVALSHA or EVAL) whose
// arguments contain with.
type failScriptOnce struct {
	with   string
	failed atomic.Int32
}

func (h *failScriptOnce) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failScriptOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && h.failed.Load() == 0 {
			for _, a := range cmd.Args() {
				var s string
				switch v := a.(type) {
				case string:
					s = v
				case []byte:
					s = string(v)
				}
				if strings.Contains(s, h.with) && h.failed.CompareAndSwap(0, 1) {
					err := errors.New("injected enqueue failure")
					cmd.SetErr(err)
					return err
				}
			}
		}
		return next(ctx, cmd)
	}
}

func (h *failScriptOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
