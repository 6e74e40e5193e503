// Package sqldb opens the database cached rows come from, for PostgreSQL
// (pgx), MySQL/MariaDB and SQLite (modernc.org/sqlite, pure Go), behind sqlx
// so that queries use bind parameters rebound for each driver.
package sqldb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers "sqlite"
)

func init() {
	sqlx.BindDriver("sqlite", sqlx.QUESTION)
}

// Open opens (without connecting) the configured database.
func Open(cfg config.DatabaseConfig) (*sqlx.DB, error) {
	kind, err := cfg.DriverName()
	if err != nil {
		return nil, err
	}
	driver, dsn, err := DSN(kind, cfg.URL)
	if err != nil {
		return nil, err
	}
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %s", kind, config.RedactError(err, cfg.URL, dsn))
	}
	maxOpen := cfg.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = 10
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxOpen)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// DSN returns the database/sql driver name and data source name for a
// cachekeeper database URL of the given kind (postgres, mysql or sqlite).
func DSN(kind, raw string) (driver, dsn string, err error) {
	switch kind {
	case "postgres":
		return "pgx", raw, nil
	case "mysql":
		if !strings.Contains(raw, "://") {
			return "mysql", raw, nil // already a go-sql-driver DSN
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("database.url %q: %s", config.Redact(raw), config.RedactError(err, raw))
		}
		c := mysql.NewConfig()
		c.Net = "tcp"
		c.Addr = u.Host
		if u.Port() == "" {
			c.Addr = u.Hostname() + ":3306"
		}
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
		c.DBName = strings.TrimPrefix(u.Path, "/")
		c.Params = map[string]string{}
		for k, v := range u.Query() {
			c.Params[k] = v[0]
		}
		return "mysql", c.FormatDSN(), nil
	case "sqlite":
		path := raw
		for _, p := range []string{"sqlite3://", "sqlite://", "file://"} {
			path = strings.TrimPrefix(path, p)
		}
		if path == "" {
			return "", "", fmt.Errorf("database.url %q names no SQLite file; use sqlite://cachekeeper.db", raw)
		}
		if path == ":memory:" {
			return "sqlite", "file::memory:?cache=shared", nil
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return "sqlite", "file:" + path + sep + "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)", nil
	}
	return "", "", fmt.Errorf("unsupported database kind %q", kind)
}

// Ping checks that the database answers within the context's deadline.
// A server that answers but refuses the connection (see IsRefused) is
// reported as such, not as unreachable.
func Ping(ctx context.Context, db *sqlx.DB) error {
	if err := db.PingContext(ctx); err != nil {
		err = describe(err)
		if IsRefused(err) {
			return fmt.Errorf("database refused the connection: %w", err)
		}
		return fmt.Errorf("database unreachable: %w", err)
	}
	return nil
}

// IsRefused reports whether err is the database answering and refusing the
// configured credentials or database name: a configuration error, which
// waiting does not fix (unlike a database that is down).
func IsRefused(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000", "3D000": // invalid password, invalid authorization, no such database
			return true
		}
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1044, 1045, 1049, 1698: // db access denied, access denied, unknown database, access denied (socket auth)
			return true
		}
	}
	return false
}

// describedError renders a PostgreSQL connection error once. pgx lists every
// attempt (with sslmode=prefer a TLS and a plain one, and one per address
// of a host name), so the same FATAL line can appear twice in one message.
type describedError struct {
	msg string
	err error
}

func (e *describedError) Error() string { return e.msg }
func (e *describedError) Unwrap() error { return e.err }

func describe(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	where := ""
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Config != nil {
		where = fmt.Sprintf("%s:%d (user %s, database %s): ", ce.Config.Host, ce.Config.Port, ce.Config.User, ce.Config.Database)
	}
	return &describedError{msg: fmt.Sprintf("%s%s: %s (SQLSTATE %s)", where, pgErr.Severity, pgErr.Message, pgErr.Code), err: err}
}
