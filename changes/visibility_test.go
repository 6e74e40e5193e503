package changes_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// stall makes the next commits of the private server wait, flushed but
// invisible to other sessions, until release: PostgreSQL waits for a
// synchronous standby that never connects, MariaDB for the semi-synchronous
// ack of a replica that does not exist (wait point AFTER_SYNC: before the
// storage engine commits).
type stall struct {
	on, off []string
	exec    func(context.Context, string) error
}

func stallFor(kind string) stall {
	if kind == "mysql" {
		return stall{
			on: []string{"SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
				"SET GLOBAL rpl_semi_sync_master_timeout = 600000", "SET GLOBAL rpl_semi_sync_master_enabled = ON"},
			off: []string{"SET GLOBAL rpl_semi_sync_master_enabled = OFF",
				"SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_COMMIT'", "SET GLOBAL rpl_semi_sync_master_timeout = 10000"},
			exec: my.Exec,
		}
	}
	return stall{
		on:   []string{"ALTER SYSTEM SET synchronous_standby_names = 'ckghost'", "SELECT pg_reload_conf()"},
		off:  []string{"ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()"},
		exec: pg.Exec,
	}
}

func (s stall) run(t *testing.T, stmts []string) {
	t.Helper()
	for _, q := range stmts {
		if err := s.exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWarmDuringInvisibleCommit: a commit the change stream has delivered
// but other sessions cannot see yet (a synchronous standby or a
// semi-synchronous replica that never answers); a fenced warm of every kind
// runs in that window and caches the old row; once the commit is visible,
// the old row must not stay cached.
//
// Not parallel: the stall is server-wide, so no other test may commit
// meanwhile.
func TestWarmDuringInvisibleCommit(t *testing.T) {
	for _, kind := range kinds {
		for _, warm := range []string{"by ids", "coalesced", "warm_all", "rewarm", "timeout"} {
			if kind == "mysql" && (warm == "coalesced" || warm == "warm_all" || warm == "timeout") {
				continue // the same worker paths as PostgreSQL's; the window is the stream's
			}
			t.Run(kind+"/"+warm, func(t *testing.T) { testWarmDuringInvisibleCommit(t, kind, warm) })
		}
	}
}

func testWarmDuringInvisibleCommit(t *testing.T, kind, warm string) {
	b := setupOn(t, kind, func(c *config.Config, sc *changes.Config) {
		if warm == "timeout" {
			// Invalidated at 300ms, and again 0.9s, 3.6s and 18s later.
			sc.VisibilityTimeout = 300 * time.Millisecond
		}
		u := c.Caches["user"]
		u.All = "SELECT id, email, full_name AS name, org_id FROM users WHERE id > ? ORDER BY id LIMIT ?"
		if warm == "rewarm" {
			u.Changes[0].Action = config.ChangeRewarm
		}
		c.Caches["user"] = u
	})
	mustExec(t, b.db, "INSERT INTO users VALUES (1, 'old@x', 'Ann', 1)")
	if kind == "postgres" {
		mustExec(t, b.db, "CREATE TABLE stall_probe (x int)")
	}
	b.start(t)
	ctx := context.Background()
	st := stallFor(kind)
	st.run(t, st.on)
	released := false
	release := func() {
		if !released {
			released = true
			st.run(t, st.off)
		}
	}
	t.Cleanup(release)
	table := "public.users"
	if kind == "mysql" {
		table = dbName(b.db) + ".users"
	}
	// The UPDATE's session must have taken the reloaded setting.
	conn, err := b.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "postgres" {
		// The checkpointer tells the backends that a synchronous standby is
		// named: wait until a probe commit waits, then cancel its wait
		// (which leaves it committed locally).
		var pid int
		if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool {
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = conn.ExecContext(ctx, "INSERT INTO stall_probe VALUES (1)")
			}()
			select {
			case <-done:
				return false
			case <-time.After(50 * time.Millisecond):
				mustExec(t, b.db, "SELECT pg_cancel_backend($1)", pid)
				<-done
				return true
			}
		})
	}
	updated := make(chan error, 1)
	go func() {
		defer conn.Close()
		_, err := conn.ExecContext(ctx, "UPDATE users SET email = 'new@x' WHERE id = 1")
		updated <- err
	}()
	delivered := b.stream.Metrics().Changes.WithLabelValues(table, "update")
	waitFor(t, 10*time.Second, func() bool { return testutil.ToFloat64(delivered) >= 1 })
	// Give the stream and the worker the time to apply what they would.
	time.Sleep(300 * time.Millisecond)
	var email string
	if err := b.db.Get(&email, "SELECT email FROM users WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-updated:
		t.Fatalf("the UPDATE returned during the stall (%v): no window to test", err)
	default:
	}
	if email != "old@x" {
		t.Fatalf("other sessions see %q during the stall: no window to test", email)
	}
	if warm == "timeout" {
		waitFor(t, 10*time.Second, func() bool { return testutil.ToFloat64(b.stream.Metrics().VisibilityTimeouts) == 1 })
	}
	switch warm {
	case "by ids", "timeout":
		if _, err := b.client.Enqueue(ctx, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}); err != nil {
			t.Fatal(err)
		}
	case "coalesced":
		if err := b.client.WarmCache(ctx, "user", 1); err != nil {
			t.Fatal(err)
		}
	case "warm_all":
		if _, err := b.client.Enqueue(ctx, &tasks.WarmAllArgs{Cache: "user", Restart: true}); err != nil {
			t.Fatal(err)
		}
	}
	if warm != "rewarm" {
		// The warm read the row other sessions see: the old one.
		waitFor(t, 10*time.Second, func() bool { return b.rdb.HGet(ctx, "user:1", "email").Val() == "old@x" })
	} else {
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("cached during the window: %q", b.rdb.HGet(ctx, "user:1", "email").Val())
	release()
	select {
	case err := <-updated:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the UPDATE did not return after the stall ended")
	}
	if err := b.db.Get(&email, "SELECT email FROM users WHERE id = 1"); err != nil || email != "new@x" {
		t.Fatalf("after the stall the database says %q (%v)", email, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := b.rdb.HGet(ctx, "user:1", "email").Val()
		if got != "old@x" {
			t.Logf("cached after the commit became visible: %q", got)
			break
		}
		if time.Now().After(deadline) {
			ttl := b.rdb.TTL(ctx, "user:1").Val()
			t.Fatalf("the old row stays cached (TTL %s) although the database says new@x", ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if warm == "rewarm" {
		waitFor(t, 10*time.Second, func() bool { return b.rdb.HGet(ctx, "user:1", "email").Val() == "new@x" })
	}
	// The window is on /metrics: one transaction waited at least the 300ms
	// the test held the stall.
	h := &dto.Metric{}
	if err := b.stream.Metrics().VisibilityWait.Write(h); err != nil {
		t.Fatal(err)
	}
	t.Logf("visibility wait: %d transactions, %.3fs in all", h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum())
	if h.GetHistogram().GetSampleCount() < 1 || h.GetHistogram().GetSampleSum() < 0.3 {
		t.Fatalf("visibility wait histogram: %d transactions, %.3fs: the window was not measured", h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum())
	}
}
