package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// dropSlot drops the PostgreSQL replication slot the scenario created. A
// slot left behind keeps WAL on the server until its disk fills, so this
// does not give up at the first error: the stream's walsender may still hold
// the slot for a moment after the stream stopped (PostgreSQL refuses to drop
// an active slot), so it waits for the slot to be released, terminates the
// walsender that still holds it after a second, and retries until timeout.
// The error names the slot and how to drop it by hand.
func dropSlot(ctx context.Context, db *sqlx.DB, slot string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var last error
	for {
		var active bool
		var pid sql.NullInt64
		err := db.QueryRowContext(ctx, "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active, &pid)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			last = err
		case active:
			last = fmt.Errorf("still active (walsender pid %d)", pid.Int64)
			if pid.Valid && time.Since(start) > time.Second {
				_, _ = db.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid.Int64)
			}
		default:
			if _, err := db.ExecContext(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
				last = err // taken again in between: look again
			} else {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench changes: replication slot %q could not be dropped within %s (%v); it keeps WAL on the server until dropped: SELECT pg_drop_replication_slot('%s')", slot, timeout, last, slot)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
