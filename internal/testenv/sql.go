package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/jmoiron/sqlx"
)

// DefaultPostgresURL is used when CACHEKEEPER_TEST_DATABASE_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DefaultMySQLURL is used when CACHEKEEPER_TEST_MYSQL_URL is not set.
const DefaultMySQLURL = "mysql://root@127.0.0.1:3306/test"

// DB is one isolated database for a test.
type DB struct {
	*sqlx.DB
	// Config points at the same database (schema), for code under test.
	Config config.DatabaseConfig
	// Kind is postgres, mysql or sqlite.
	Kind string
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Postgres creates a fresh schema in the test PostgreSQL database and returns
// a pool whose search_path is that schema; the schema is dropped afterwards.
func Postgres(t testing.TB) *DB {
	t.Helper()
	base := os.Getenv("CACHEKEEPER_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	admin, err := sqldb.Open(config.DatabaseConfig{URL: base})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		unavailable(t, "PostgreSQL at %s is unreachable: %v", config.RedactURL(base), err)
	}
	schema := randomName("ck_")
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	cfg := config.DatabaseConfig{URL: u.String()}
	db, err := sqldb.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		a, err := sqldb.Open(config.DatabaseConfig{URL: base})
		if err == nil {
			_, _ = a.Exec("DROP SCHEMA " + schema + " CASCADE")
			_ = a.Close()
		}
	})
	return &DB{DB: db, Config: cfg, Kind: "postgres"}
}

// MySQL creates a fresh database on the test MariaDB/MySQL server.
func MySQL(t testing.TB) *DB {
	t.Helper()
	base := os.Getenv("CACHEKEEPER_TEST_MYSQL_URL")
	if base == "" {
		base = DefaultMySQLURL
	}
	admin, err := sqldb.Open(config.DatabaseConfig{URL: base})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Skipf("MySQL/MariaDB at %s is unreachable: %v", config.RedactURL(base), err)
	}
	name := randomName("ck_")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, _ := url.Parse(base)
	u.Path = "/" + name
	cfg := config.DatabaseConfig{URL: u.String()}
	db, err := sqldb.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		if a, err := sqldb.Open(config.DatabaseConfig{URL: base}); err == nil {
			_, _ = a.Exec("DROP DATABASE " + name)
			_ = a.Close()
		}
	})
	return &DB{DB: db, Config: cfg, Kind: "mysql"}
}

// SQLite creates a database file in the test's temporary directory.
func SQLite(t testing.TB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	cfg := config.DatabaseConfig{URL: "sqlite://" + path}
	db, err := sqldb.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("sqlite: %v", err)
	}
	return &DB{DB: db, Config: cfg, Kind: "sqlite"}
}

// SQLDatabases returns one database of every kind available, for tests that
// must pass on each (PostgreSQL and SQLite always; MySQL when reachable).
func SQLDatabases(t testing.TB) map[string]func(testing.TB) *DB {
	return map[string]func(testing.TB) *DB{"postgres": Postgres, "sqlite": SQLite, "mysql": MySQL}
}
