package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers "mysql"
)

// MariaDBInstance is a private MariaDB server with the binlog on
// (binlog_format=ROW, binlog_row_image=FULL), in a temporary data directory,
// on a free port of 127.0.0.1 and a unix socket in that directory. Start one
// per test package (TestMain) and give each test a database with
// NewDatabase.
type MariaDBInstance struct {
	// Dir holds the data directory and the socket.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	srv  *server
}

var mariadbDirs = []string{"/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"}

// StartMariaDB installs a fresh data directory with mariadb-install-db
// --no-defaults (the system's my.cnf would break it) and starts mariadbd
// with the binlog on. The error wraps ErrNotInstalled when a binary is
// missing.
func StartMariaDB() (*MariaDBInstance, error) {
	install, err := findBinary("mariadb-install-db", mariadbDirs...)
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install mariadb-server)", err)
	}
	mysqld, err := findBinary("mariadbd", mariadbDirs...)
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install mariadb-server)", err)
	}
	dir, err := os.MkdirTemp("", "ckmaria")
	if err != nil {
		return nil, err
	}
	m := &MariaDBInstance{Dir: dir}
	fail := func(err error) (*MariaDBInstance, error) {
		m.Stop()
		return nil, err
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	user := []string{}
	if os.Geteuid() == 0 {
		user = []string{"--user=root"}
	}
	ini := exec.CommandContext(ctx, install, append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, user...)...)
	if out, err := ini.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mariadb-install-db: %v: %s", err, tail(out)))
	}
	if m.Port, err = freePort(); err != nil {
		return fail(err)
	}
	args := append([]string{"--no-defaults", "--datadir=" + data, "--port=" + fmt.Sprint(m.Port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--log-error=" + filepath.Join(dir, "error.log"),
		"--log-bin=" + filepath.Join(dir, "binlog"), "--binlog-format=ROW", "--binlog-row-image=FULL",
		"--server-id=1", "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
		"--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0", "--innodb-doublewrite=0",
		"--max-connections=200"}, user...)
	if m.srv, err = startServer(exec.Command(mysqld, args...)); err != nil {
		return fail(err)
	}
	for {
		db, err := sql.Open("mysql", m.dsn(""))
		if err == nil {
			err = db.PingContext(ctx)
			_ = db.Close()
		}
		if err == nil {
			return m, nil
		}
		if m.srv.exited() || ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fail(fmt.Errorf("mariadbd on port %d did not start: %v; log: %s %s", m.Port, err, m.srv.log, tail(log)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *MariaDBInstance) dsn(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", m.Port, db)
}

// URL connects as root (no password) to database db.
func (m *MariaDBInstance) URL(db string) string {
	return fmt.Sprintf("mysql://root@127.0.0.1:%d/%s", m.Port, db)
}

// Stop shuts the server down (SIGTERM, killed after 10s) and removes its
// directory. Safe to call more than once.
func (m *MariaDBInstance) Stop() {
	if m == nil {
		return
	}
	if m.srv != nil {
		m.srv.stop(syscall.SIGTERM, 10*time.Second)
	}
	if m.Dir != "" {
		_ = os.RemoveAll(m.Dir)
	}
}

// Exec runs one statement as root.
func (m *MariaDBInstance) Exec(ctx context.Context, stmt string) error {
	db, err := sql.Open("mysql", m.dsn(""))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// NewDatabase creates a database for one test, dropped when it ends.
func (m *MariaDBInstance) NewDatabase(t testing.TB) *DB {
	t.Helper()
	name := randomName("ck_")
	return instanceDatabase(t, "mysql", m.Exec, m.URL(name), name, "DROP DATABASE IF EXISTS "+name)
}
