package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartStandby starts a physical streaming standby of p (pg_basebackup of
// the running cluster, in a temporary directory, on a free port) whose
// walreceiver names itself name; then makes it p's synchronous standby
// (synchronous_standby_names = name), so every commit on p waits for the
// standby's answer. Stop the standby before p.
func (p *PostgresInstance) StartStandby(name string) (*PostgresInstance, error) {
	basebackup, err := findBinary("pg_basebackup", postgresBinDirs()...)
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install postgresql)", err)
	}
	postgres, err := findBinary("postgres", filepath.Dir(basebackup))
	if err != nil {
		return nil, err
	}
	cred, err := runAs("postgres")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ckpgstandby")
	if err != nil {
		return nil, err
	}
	s := &PostgresInstance{Dir: dir}
	fail := func(err error) (*PostgresInstance, error) {
		s.Stop()
		return nil, err
	}
	if err := chownTree(dir, cred); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bb := exec.CommandContext(ctx, basebackup, "-D", data, "-h", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-U", "postgres",
		"-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	bb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := bb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pg_basebackup: %v: %s", err, tail(out)))
	}
	if s.Port, err = freePort(); err != nil {
		return fail(err)
	}
	cmd := exec.Command(postgres, "-D", data, "-p", fmt.Sprint(s.Port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "cluster_name="+name, "-c", "hot_standby=on",
		"-c", "max_connections=200", "-c", "max_wal_senders=64", "-c", "max_replication_slots=64", "-c", "wal_level=logical",
		"-c", "fsync=off", "-c", "shared_buffers=32MB",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if s.srv, err = startServer(cmd); err != nil {
		return fail(err)
	}
	// Streaming: the primary sees the walreceiver by its name.
	for {
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			var n int
			err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'", name).Scan(&n)
			_ = conn.Close(ctx)
			if err == nil && n > 0 {
				break
			}
		}
		if s.srv.exited() || ctx.Err() != nil {
			return fail(fmt.Errorf("standby on port %d did not stream: %v; log: %s", s.Port, err, s.srv.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = '" + name + "'", "SELECT pg_reload_conf()"} {
		if err := p.Exec(ctx, q); err != nil {
			return fail(err)
		}
	}
	return s, nil
}
