package devmode

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// DemoUsers is how many users the demo table holds.
const DemoUsers = 50

// seedUsers creates the users table if it does not exist and fills it when
// empty. It never touches a table that already has rows.
func seedUsers(ctx context.Context, db *sqlx.DB) (int, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users (
		id INTEGER PRIMARY KEY,
		email VARCHAR(255) NOT NULL,
		full_name VARCHAR(255),
		updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`); err != nil {
		return 0, err
	}
	var n int
	if err := db.GetContext(ctx, &n, "SELECT COUNT(*) FROM users"); err != nil {
		return 0, err
	}
	if n > 0 {
		return n, nil
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	q := tx.Rebind("INSERT INTO users (id, email, full_name, updated_at) VALUES (?, ?, ?, ?)")
	now := time.Now().UTC()
	for i := 1; i <= DemoUsers; i++ {
		if _, err := tx.ExecContext(ctx, q, i, fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("Demo User %d", i), now); err != nil {
			return 0, err
		}
	}
	return DemoUsers, tx.Commit()
}
