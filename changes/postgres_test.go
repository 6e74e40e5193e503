package changes_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func countKeys(t *testing.T, b *bundle, pattern string) int {
	t.Helper()
	keys, err := b.rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
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
// TestReplicaTakesOver runs two readers; the holder is killed; the other
// takes over within seconds and applies a change made after the kill.
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

// A slot nobody reads keeps WAL on the primary: Status reports it, and a
// stream that starts with the slot past RetainedWALWarn logs the warning
// with how to drop the slot.
func TestRetainedWALIsReportedAndWarned(t *testing.T) {
	t.Parallel()
	var sc *changes.Config
	b := setup(t, func(_ *config.Config, c *changes.Config) { c.RetainedWALWarn = 64 << 10; sc = c })
	b.seed(t, 2000)
	// A first run creates the slot, then stops: the slot holds what follows.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.stream.Run(ctx) }()
	b.waitStreaming(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the stream did not stop within 15s")
	}
	for i := range 5 {
		mustExec(t, b.db, fmt.Sprintf("UPDATE users SET full_name = 'w%d'", i))
	}
	st, err := b.stream.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Exists || st.SlotActive || st.RetainedBytes <= 64<<10 || st.LagBytes <= 0 || st.Holder != "" {
		t.Fatalf("status of the stopped stream's slot after 10000 row updates: %+v, want it inactive, no holder, > 64 KiB retained and lagging", st)
	}
	var logs syncBuffer
	c := *sc
	c.Registerer = nil
	again, err := changes.New(c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "stream", again.Run)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "retains WAL past the threshold") })
	if l := logs.String(); !strings.Contains(l, "pg_drop_replication_slot") || !strings.Contains(l, "threshold_bytes=65536") {
		t.Errorf("warning %q lacks how to drop the slot or the threshold", l)
	}
	// Caught up, it confirms past the updates: the slot lets the WAL go.
	waitFor(t, 10*time.Second, func() bool {
		st, err := again.Status(context.Background())
		return err == nil && st.SlotActive && st.LagBytes < st.RetainedBytes
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The holder's host is lost: its connections to the database stall (a
// proxy that holds the bytes, no FIN), then the reader is killed. The
// waiting replica takes the lease after its TTL and applies the next change
// within the lease TTL plus a few seconds: on PostgreSQL it ends the
// walsender the dead holder left on the slot (else it would wait for
// wal_sender_timeout, 60s); MySQL has no slot to wait for.
func TestTakeoverWhenTheHoldersHostIsLost(t *testing.T) {
	forEachKind(t, testTakeoverWhenTheHoldersHostIsLost)
}

func testTakeoverWhenTheHoldersHostIsLost(t *testing.T, kind string) {
	b := setupOn(t, kind, nil)
	b.seed(t, 5)
	ctx := context.Background()
	u, err := url.Parse(b.cfg.Database.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr
	a := b.startHelperOn(t, "replica-a", u.String())
	b.waitStreaming(t)
	c := b.startHelper(t, "replica-c")
	time.Sleep(500 * time.Millisecond)
	if st, _ := b.stream.Status(ctx); st.Holder != "replica-a" {
		t.Fatalf("holder %q, want replica-a (started first)", st.Holder)
	}
	proxy.Stall()
	lost := time.Now()
	a.kill(t, syscall.SIGKILL)
	mustExec(t, b.db, "UPDATE users SET email = 'x' WHERE id = 1")
	took := waitFor(t, 40*time.Second, func() bool { return b.exists("user:1") == 0 })
	st, _ := b.stream.Status(ctx)
	t.Logf("holder's host lost (stalled, then killed): %q applied the next change %s later (lease TTL 2s)", st.Holder, took.Round(time.Millisecond))
	if time.Since(lost) > 10*time.Second {
		t.Errorf("takeover took %s; want the lease TTL plus a few seconds", time.Since(lost).Round(time.Millisecond))
	}
	c.kill(t, syscall.SIGTERM) // its log is read once it has exited
	if kind == "postgres" && !strings.Contains(c.log.String(), "ended the walsender a dead holder left") {
		t.Errorf("replica-c did not end the dead holder's walsender")
	}
}
