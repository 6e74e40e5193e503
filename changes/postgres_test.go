package changes_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestUpdateInvalidatesItsKeyWithin2s(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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

func TestInsertDeleteAndIDChange(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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
	t.Parallel()
	b := setup(t, func(_ *config.Config, sc *changes.Config) { sc.BatchSize = 2000 })
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

func countKeys(t *testing.T, b *bundle, pattern string) int {
	t.Helper()
	keys, err := b.rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestTagsAndTruncate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
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

// TestFenceRaceOnLogicalReplication: a warm reads the old row; another
// client (no cachekeeper call) commits an UPDATE; the change stream's
// invalidation lands while the warm is still before its write; the warm's
// write is refused, so the old row never comes back.
func TestFenceRaceOnLogicalReplication(t *testing.T) {
	t.Parallel()
	gate := rand.Int64N(1<<31-1) + 1
	b := setup(t, func(c *config.Config, _ *changes.Config) {
		u := c.Caches["user"]
		u.ByIDs = "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?) AND gate()"
		c.Caches["user"] = u
	}, func(db *testenv.DB) {
		mustExec(t, db, fmt.Sprintf(`CREATE FUNCTION gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM pg_advisory_lock_shared(%d); PERFORM pg_advisory_unlock_shared(%d); RETURN true; END $$`, gate, gate))
	})
	mustExec(t, b.db, "INSERT INTO users VALUES (1, 'old@x', 'Ann', 1)")
	b.start(t)
	ctx := context.Background()
	conn, err := b.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", gate); err != nil {
		t.Fatal(err)
	}
	info, err := b.client.Enqueue(ctx, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The warm has read (its snapshot holds old@x) and waits on the gate.
	waitFor(t, 10*time.Second, func() bool {
		var n int
		err := b.db.Get(&n, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted", gate)
		return err == nil && n > 0
	})
	mustExec(t, b.db, "UPDATE users SET email = 'new@x' WHERE id = 1")
	// The stream's invalidation ran: the fence of user:1 is up.
	waitFor(t, 2*time.Second, func() bool { return b.exists("cachekeeper:fence:{user:1}") == 1 })
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", gate); err != nil {
		t.Fatal(err)
	}
	insp := b.inspector(t)
	waitFor(t, 10*time.Second, func() bool {
		ti, err := insp.GetTaskInfo(info.Queue, info.ID)
		return err == nil && ti.CompletedAt.After(time.Time{})
	})
	if got := b.rdb.HGet(ctx, "user:1", "email").Val(); got != "" {
		t.Fatalf("the warm that read the old row wrote %q back after the committed UPDATE's invalidation", got)
	}
	// A warm that starts now reads the new row.
	info, err = b.client.Enqueue(ctx, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return b.rdb.HGet(ctx, "user:1", "email").Val() == "new@x" })
}

func TestRewarmAction(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config, _ *changes.Config) { c.Caches = userCaches(config.ChangeRewarm) })
	b.seed(t, 2)
	b.start(t)
	mustExec(t, b.db, "UPDATE users SET email = 'fresh@x' WHERE id = 1")
	waitFor(t, 10*time.Second, func() bool {
		return b.rdb.HGet(context.Background(), "user:1", "email").Val() == "fresh@x"
	})
}

// TestKilledReaderCatchesUp kills the reader process with SIGKILL, changes
// rows while it is down, and checks the next reader applies them (the slot
// kept the position of the last enqueued transaction).
func TestKilledReaderCatchesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.seed(t, 10)
	h := b.startHelper(t, "first")
	waitFor(t, 20*time.Second, func() bool { st, err := b.stream.Status(context.Background()); return err == nil && st.SlotActive })
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

// TestReplicaTakesOver runs two readers; the holder is killed; the other
// takes over within seconds and applies a change made after the kill.
func TestReplicaTakesOver(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.seed(t, 5)
	ctx := context.Background()
	a := b.startHelper(t, "replica-a")
	waitFor(t, 20*time.Second, func() bool { st, err := b.stream.Status(ctx); return err == nil && st.SlotActive })
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
	t.Parallel()
	b := setup(t, nil)
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
	if st.Database != "postgres" || !st.SlotActive || st.ServerPosition == "" || st.RetainedBytes < 0 {
		t.Fatalf("status %+v", st)
	}
	if got := b.batches(tasks.KindInvalidate); got < 1 {
		t.Fatalf("batches metric = %v", got)
	}
}

func TestRefusesServerWithoutLogicalWAL(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t) // the machine's PostgreSQL: wal_level=replica
	var wal string
	if err := db.Get(&wal, "SHOW wal_level"); err != nil {
		t.Fatal(err)
	}
	if wal == "logical" {
		t.Skip("the shared PostgreSQL has wal_level=logical")
	}
	if _, err := db.Exec("CREATE TABLE users (id BIGINT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRedis(t)
	s, err := changes.New(changes.Config{Caches: userCaches(""), Database: db.Config, Redis: r.Client}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if !errors.Is(err, changes.ErrSetup) || !strings.Contains(err.Error(), "wal_level = logical") {
		t.Fatalf("Run on wal_level=%s: %v, want ErrSetup saying to set wal_level = logical", wal, err)
	}
	t.Log(err)
}

func TestRefusesRoleWithoutReplication(t *testing.T) {
	t.Parallel()
	testenv.RequireInstance(t, "private PostgreSQL", pgErr)
	db := pg.NewDatabase(t)
	mustExec(t, db, "CREATE TABLE users (id BIGINT PRIMARY KEY)")
	role := "norepl_" + strings.TrimPrefix(dbName(db), "ck_")
	mustExec(t, db, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { _, _ = db.Exec("DROP ROLE " + role) })
	r := testenv.NewRedis(t)
	url := strings.Replace(db.Config.URL, "postgres://postgres@", "postgres://"+role+"@", 1)
	s, err := changes.New(changes.Config{Caches: userCaches(""), Database: config.DatabaseConfig{URL: url}, Redis: r.Client}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if !errors.Is(err, changes.ErrSetup) || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("Run as a role without REPLICATION: %v", err)
	}
	t.Log(err)
}
