package sqldb_test

import (
	"context"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/jmoiron/sqlx"
)

func TestDSN(t *testing.T) {
	t.Parallel()
	cases := []struct{ kind, url, driver, dsn string }{
		{"postgres", "postgres://u@h:5432/db", "pgx", "postgres://u@h:5432/db"},
		{"mysql", "mysql://root:pw@db:3307/app?parseTime=true", "mysql", "root:pw@tcp(db:3307)/app?parseTime=true"},
		{"mysql", "mysql://root@db/app", "mysql", "root@tcp(db:3306)/app"},
		{"mysql", "root@tcp(db:3306)/app", "mysql", "root@tcp(db:3306)/app"},
		{"sqlite", "sqlite://:memory:", "sqlite", "file::memory:?cache=shared"},
		{"sqlite", "sqlite:///var/lib/x.db", "sqlite", "file:/var/lib/x.db?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"},
	}
	for _, c := range cases {
		d, dsn, err := sqldb.DSN(c.kind, c.url)
		if err != nil || d != c.driver || dsn != c.dsn {
			t.Errorf("DSN(%s, %s) = %s %s %v, want %s %s", c.kind, c.url, d, dsn, err, c.driver, c.dsn)
		}
	}
	if _, _, err := sqldb.DSN("sqlite", "sqlite://"); err == nil {
		t.Error("empty sqlite path accepted")
	}
}

// Every supported database runs the same IN (?) query after sqlx.In + Rebind.
func TestInRebindOnEveryDatabase(t *testing.T) {
	t.Parallel()
	for name, open := range testenv.SQLDatabases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20))"); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				if _, err := db.ExecContext(ctx, db.Rebind("INSERT INTO items (id, name) VALUES (?, ?)"), i, "n"); err != nil {
					t.Fatal(err)
				}
			}
			q, args, err := sqlx.In("SELECT COUNT(*) FROM items WHERE id IN (?)", []string{"1", "3", "9"})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.GetContext(ctx, &n, db.Rebind(q), args...); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Fatalf("count = %d, want 2", n)
			}
			if err := sqldb.Ping(ctx, db.DB); err != nil {
				t.Fatal(err)
			}
		})
	}
}
