package changes_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// Not parallel: it changes the private server's global binlog_format while
// no other test runs.
func TestMySQLRefusesStatementBinlog(t *testing.T) {
	testenv.RequireInstance(t, "private MariaDB", myErr)
	ctx := context.Background()
	if err := my.Exec(ctx, "SET GLOBAL binlog_format = 'MIXED'"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := my.Exec(ctx, "SET GLOBAL binlog_format = 'ROW'"); err != nil {
			t.Fatal(err)
		}
	}()
	db := my.NewDatabase(t)
	mustExec(t, db, "CREATE TABLE users (id BIGINT PRIMARY KEY)")
	mustExec(t, db, "CREATE TABLE memberships (id BIGINT PRIMARY KEY, org_id BIGINT)")
	r := testenv.NewRedis(t)
	s, err := changes.New(changes.Config{Caches: cachesFor("mysql", ""), Database: db.Config, Redis: r.Client}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(ctx)
	if !errors.Is(err, changes.ErrSetup) || !strings.Contains(err.Error(), "binlog_format = 'ROW'") {
		t.Fatalf("Run with binlog_format=MIXED: %v", err)
	}
	t.Log(err)
}

// The machine's MariaDB runs without a binlog.
func TestMySQLRefusesServerWithoutBinlog(t *testing.T) {
	t.Parallel()
	db := testenv.MySQL(t)
	var logBin int
	if err := db.Get(&logBin, "SELECT @@GLOBAL.log_bin"); err != nil {
		t.Fatal(err)
	}
	if logBin == 1 {
		t.Skip("the shared MariaDB has the binlog on")
	}
	mustExec(t, db, "CREATE TABLE users (id BIGINT PRIMARY KEY)")
	mustExec(t, db, "CREATE TABLE memberships (id BIGINT PRIMARY KEY, org_id BIGINT)")
	r := testenv.NewRedis(t)
	s, err := changes.New(changes.Config{Caches: cachesFor("mysql", ""), Database: db.Config, Redis: r.Client}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if !errors.Is(err, changes.ErrSetup) || !strings.Contains(err.Error(), "binlog is off") {
		t.Fatalf("Run without a binlog: %v", err)
	}
	t.Log(err)
}
