package changes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"vitess.io/vitess/go/mysql"
)

// A database sends a transaction to its change stream once the commit
// record is durable, which is before other sessions can see the commit:
// PostgreSQL removes the transaction from its in-progress list only after
// the commit record is flushed (and, with synchronous replication, after
// the standby's answer); MySQL and MariaDB write the binlog before the
// storage engine commits (and, with semi-synchronous replication at
// AFTER_SYNC, wait for the replica's ack in between). An invalidation run
// in that window is not enough: a warm whose read begins after it still
// reads the old row and caches it, and nothing invalidates it again.
//
// So a transaction's jobs are enqueued only once the transaction is proven
// visible to new snapshots (a proof taken before the first enqueue): every
// invalidation then runs after the commit became visible, and any warm that
// read the old row either wrote before it (and is deleted) or is refused by
// its fence. The proof is one query per transaction (not per row); the wait
// is the window itself, which is near zero without synchronous replication.

// visibilityProof reports whether the current transaction is visible to a
// snapshot taken now; errUnprovable means it cannot tell (see unprovable).
type visibilityProof func(ctx context.Context) (bool, error)

// errUnprovable marks a proof that cannot be made (e.g. the user lacks the
// privilege of a locking read); the transaction is then handled as late.
var errUnprovable = errors.New("visibility cannot be proven")

// lateFactors are the delays, as multiples of the visibility timeout, of
// the extra invalidations of a transaction not proven visible in time
// (default timeout 10s: +30s, +2m, +10m after the first).
var lateFactors = []time.Duration{3, 12, 60}

// begin sets the proof of the transaction being decoded; the first enqueue
// of its jobs waits for it.
func (a *applier) begin(proof visibilityProof) {
	a.proof = proof
	a.proven = false
	a.late = false
}

// ensureVisible waits, before the transaction's first job is enqueued,
// until its proof says it is visible, for at most the visibility timeout.
// Past it (or when no proof is possible) the jobs are enqueued now and
// again at later times (late), and a metric and a warning say so.
func (a *applier) ensureVisible(ctx context.Context) error {
	if a.proven || a.proof == nil {
		return nil
	}
	a.proven = true
	start := time.Now()
	backoff := time.Millisecond
	for {
		ok, err := a.proof(ctx)
		if errors.Is(err, errUnprovable) {
			a.metrics.VisibilityUnproven.Inc()
			if !a.unprovableLogged {
				a.unprovableLogged = true
				a.logger.Warn("changes: cannot prove that a delivered commit is visible to other sessions; its invalidations are repeated later instead",
					slog.String("error", err.Error()), slog.String("repeats", a.lateSchedule()))
			}
			a.late = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("changes: check that the commit is visible: %w", err)
		}
		if ok {
			a.metrics.VisibilityWait.Observe(time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) >= a.visibilityTimeout {
			a.metrics.VisibilityTimeouts.Inc()
			a.metrics.VisibilityWait.Observe(time.Since(start).Seconds())
			a.late = true
			a.logger.Warn("changes: a delivered commit is still not visible to other sessions (a synchronous standby or semi-synchronous replica not answering?); invalidating now and again later: a warm that reads the old row before the commit becomes visible may cache it until the next repeat",
				slog.Duration("waited", time.Since(start).Round(time.Millisecond)), slog.String("repeats", a.lateSchedule()))
			return nil
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		if backoff < 20*time.Millisecond {
			backoff *= 2
		}
	}
}

// lateDelays are the delays of the repeated invalidations of a late
// transaction.
func (a *applier) lateDelays() []time.Duration {
	out := make([]time.Duration, len(lateFactors))
	for i, f := range lateFactors {
		out[i] = f * a.visibilityTimeout
	}
	return out
}

func (a *applier) lateSchedule() string {
	var parts []string
	for _, d := range a.lateDelays() {
		parts = append(parts, "+"+d.String())
	}
	return strings.Join(parts, ", ")
}

// pgSnapshot is a parsed pg_current_snapshot(): xids below xmin are
// finished, those from xmax on not yet, xip in progress.
type pgSnapshot struct {
	xmin, xmax uint64
	xip        map[uint64]struct{}
}

// parsePGSnapshot parses the text form "xmin:xmax:xip,xip,...".
func parsePGSnapshot(s string) (pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return pgSnapshot{}, fmt.Errorf("snapshot %q is not xmin:xmax:xip", s)
	}
	var snap pgSnapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		snap.xip = map[uint64]struct{}{}
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return pgSnapshot{}, fmt.Errorf("snapshot %q: %w", s, err)
			}
			snap.xip[v] = struct{}{}
		}
	}
	return snap, nil
}

// full widens a 32-bit xid (as pgoutput sends it) to the 64-bit one nearest
// the snapshot's xmax.
func (s pgSnapshot) full(xid uint32) uint64 {
	c := s.xmax&^0xffffffff | uint64(xid)
	switch {
	case c > s.xmax && c-s.xmax > 1<<31 && c >= 1<<32:
		c -= 1 << 32
	case c < s.xmax && s.xmax-c > 1<<31:
		c += 1 << 32
	}
	return c
}

// visible reports whether the transaction xid is visible in the snapshot.
func (s pgSnapshot) visible(xid uint32) bool {
	x := s.full(xid)
	if x < s.xmin {
		return true
	}
	if x >= s.xmax {
		return false
	}
	_, running := s.xip[x]
	return !running
}

// proofOf proves a MySQL/MariaDB transaction visible by a locking read of
// one row it changed (by primary key): the transaction holds that row's
// lock until the storage engine commits it, which is when it becomes
// visible, so the read returns once it is (or after the 1s lock wait, when
// the proof is tried again).
func (r *myReader) proofOf(tm *mysql.TableMap, cols []column, c Change) visibilityProof {
	row := c.New
	if row == nil {
		row = c.Old
	}
	var where []string
	var args []any
	for _, col := range cols {
		if !col.primary {
			continue
		}
		v, ok := row[col.name]
		if !ok {
			return func(context.Context) (bool, error) {
				return false, fmt.Errorf("%w: the row image of %s.%s lacks primary key column %s", errUnprovable, tm.Database, tm.Name, col.name)
			}
		}
		where = append(where, quoteMy(col.name)+" = ?")
		args = append(args, v)
	}
	if len(where) == 0 {
		return func(context.Context) (bool, error) {
			return false, fmt.Errorf("%w: table %s.%s has no primary key", errUnprovable, tm.Database, tm.Name)
		}
	}
	q := "SELECT 1 FROM " + quoteMy(tm.Database) + "." + quoteMy(tm.Name) + " WHERE " + strings.Join(where, " AND ") + " LOCK IN SHARE MODE"
	return func(ctx context.Context) (bool, error) {
		if r.lockConn == nil {
			conn, err := r.db.Conn(ctx)
			if err != nil {
				return false, err
			}
			if _, err := conn.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
				_ = conn.Close()
				return false, err
			}
			r.lockConn = conn
		}
		var one int
		err := r.lockConn.QueryRowContext(ctx, q, args...).Scan(&one)
		if err == nil || errors.Is(err, sql.ErrNoRows) {
			return true, nil
		}
		var me *mysqldriver.MySQLError
		if errors.As(err, &me) {
			switch me.Number {
			case 1205, 1213: // lock wait timeout, deadlock: not yet
				return false, nil
			case 1142, 1143, 1044, 1227: // no privilege
				return false, fmt.Errorf("%w: %v (grant SELECT and UPDATE on the followed tables to the stream's user)", errUnprovable, err)
			}
		}
		r.closeLockConn()
		return false, err
	}
}

func (r *myReader) closeLockConn() {
	if r.lockConn != nil {
		_ = r.lockConn.Close()
		r.lockConn = nil
	}
}

func quoteMy(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }
