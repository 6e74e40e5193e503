package changes_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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
