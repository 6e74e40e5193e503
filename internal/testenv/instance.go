package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
)

// ErrNotInstalled says a database server binary is missing: tests skip on
// it, or fail with CI=true (see RequireInstance).
var ErrNotInstalled = errors.New("not installed")

// RequireInstance stops the test when a shared server instance (started in
// TestMain) could not start: skip when it is not installed, fail under CI
// or when it is installed but would not start.
func RequireInstance(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotInstalled) {
		unavailable(t, "%s: %v", what, err)
		return
	}
	t.Fatalf("%s: %v", what, err)
}

// instanceDatabase creates database name on a server the tests started
// (exec runs one statement as its superuser), opens it at url, and drops it
// with dropSQL when the test ends.
func instanceDatabase(t testing.TB, kind string, exec func(context.Context, string) error, url string, name string, dropSQL ...string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cfg := config.DatabaseConfig{URL: url}
	db, err := sqldb.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, q := range dropSQL {
			_ = exec(ctx, q)
		}
	})
	return &DB{DB: db, Config: cfg, Kind: kind}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// server is a database server process the tests started.
type server struct {
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{}
	once sync.Once
}

// startServer starts cmd in its own process group, killed if this process
// dies, with its output kept for error messages.
func startServer(cmd *exec.Cmd) (*server, error) {
	s := &server{cmd: cmd, log: &tailBuffer{max: 8192}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	return s, nil
}

// exited reports whether the process has ended.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace, then kills it.
func (s *server) stop(sig syscall.Signal, grace time.Duration) {
	s.once.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, sig)
		select {
		case <-s.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

// runAs returns the credential to run a server as the named system user
// when this process is root (PostgreSQL refuses to run as root), else nil.
func runAs(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root needs the %q system user to start the server: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTree gives dir to cred's user (no-op when cred is nil).
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// findBinary looks name up on PATH, then in the given directories' globs.
func findBinary(name string, globs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, g := range globs {
		if p, err := exec.LookPath(g + "/" + name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is %w (not on PATH nor in %s)", name, ErrNotInstalled, strings.Join(globs, ", "))
}
