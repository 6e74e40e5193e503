package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresInstance is a private PostgreSQL cluster with wal_level=logical,
// started from the installed initdb and postgres binaries in a temporary
// directory, on a free port of 127.0.0.1 and a unix socket in that
// directory. Start one per test package (TestMain) and give each test its
// own database with NewDatabase: starting a cluster takes seconds.
type PostgresInstance struct {
	// Dir holds the data directory and the socket.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	srv  *server
}

// postgresBinDirs are searched after PATH, newest version first.
func postgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	return dirs
}

// StartPostgres initialises and starts a private cluster. The error wraps
// ErrNotInstalled when initdb or postgres is missing. Settings are extra
// "-c name=value" server settings.
func StartPostgres(settings ...string) (*PostgresInstance, error) {
	dirs := postgresBinDirs()
	initdb, err := findBinary("initdb", dirs...)
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install postgresql)", err)
	}
	postgres, err := findBinary("postgres", filepath.Dir(initdb))
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install postgresql)", err)
	}
	cred, err := runAs("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ckpg")
	if err != nil {
		return nil, err
	}
	p := &PostgresInstance{Dir: dir}
	fail := func(err error) (*PostgresInstance, error) {
		p.Stop()
		return nil, err
	}
	if err := chownTree(dir, cred); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ini := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	ini.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := ini.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v: %s", err, tail(out)))
	}
	if p.Port, err = freePort(); err != nil {
		return fail(err)
	}
	args := []string{"-D", data, "-p", fmt.Sprint(p.Port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical",
		"-c", "max_replication_slots=64", "-c", "max_wal_senders=64", "-c", "max_connections=200",
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "logging_collector=off", "-c", "log_min_messages=warning"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(postgres, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if p.srv, err = startServer(cmd); err != nil {
		return fail(err)
	}
	for {
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return p, nil
		}
		if p.srv.exited() || ctx.Err() != nil {
			return fail(fmt.Errorf("postgres on port %d did not start: %v; log: %s", p.Port, err, p.srv.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL connects as the superuser postgres to database db over TCP.
func (p *PostgresInstance) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Stop shuts the server down (fast shutdown, killed after 10s) and removes
// its directory. Safe to call more than once.
func (p *PostgresInstance) Stop() {
	if p == nil {
		return
	}
	if p.srv != nil {
		p.srv.stop(syscall.SIGINT, 10*time.Second)
	}
	if p.Dir != "" {
		_ = os.RemoveAll(p.Dir)
	}
}

// NewDatabase creates a database for one test and drops it (with its
// replication slots) when the test ends.
func (p *PostgresInstance) NewDatabase(t testing.TB) *DB {
	t.Helper()
	name := randomName("ck_")
	return instanceDatabase(t, "postgres", p.Exec, p.URL(name), name,
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '"+name+"' AND NOT active",
		"DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// Exec runs one statement on database postgres as the superuser.
func (p *PostgresInstance) Exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
