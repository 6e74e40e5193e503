package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/redis/go-redis/v9"
)

// Redis is one private Redis server for a test.
type Redis struct {
	// URL connects to it (unix:///tmp/.../redis.sock or redis://...).
	URL string
	// Config is a RedisConfig pointing at it.
	Config config.RedisConfig
	// Client is a go-redis client, closed when the test ends.
	Client *redis.Client
	// Real is false when the server is miniredis.
	Real bool
}

// NewRedis starts a private redis-server on a unix socket in a temporary
// directory and stops it when the test ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if CI() {
			t.Fatalf("CI=true and redis-server is not on PATH: install it (apt-get install redis-server)")
		}
		if u := os.Getenv("CACHEKEEPER_TEST_REDIS_URL"); u != "" {
			t.Logf("testenv: redis-server not found; using CACHEKEEPER_TEST_REDIS_URL")
			return connect(t, u, true)
		}
		t.Logf("testenv: redis-server not found; falling back to miniredis (some commands differ)")
		return NewMiniredis(t)
	}
	dir, err := os.MkdirTemp("", "ckredis")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir, "--databases", "16", "--loglevel", "warning")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	// Killed with the test binary too: a test that times out (panics) runs
	// no cleanup, and an orphaned server would keep every inherited file
	// open (such as a lock the test run was started under).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	var logTail strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if logTail.Len() < 4096 {
				logTail.WriteString(sc.Text() + "\n")
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not create %s within 10s", sock)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return connect(t, "unix://"+sock, true)
}

// NewMiniredis starts an in-process miniredis with wall-clock TTLs.
func NewMiniredis(t testing.TB) *Redis {
	t.Helper()
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("miniredis: %v", err)
	}
	t.Cleanup(m.Close)
	r := connect(t, "redis://"+m.Addr()+"/0", false)
	return r
}

// Connect returns a client of the real Redis at rawURL (a Server's, say),
// closed when the test ends.
func Connect(t testing.TB, rawURL string) *Redis {
	t.Helper()
	return connect(t, rawURL, true)
}

func connect(t testing.TB, rawURL string, real bool) *Redis {
	t.Helper()
	cfg := config.RedisConfig{URL: rawURL}
	opt, err := cfg.Options()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if CI() {
			t.Fatalf("CI=true and Redis at %s does not answer: %v", config.RedactURL(rawURL), err)
		}
		t.Skipf("Redis at %s does not answer: %v", config.RedactURL(rawURL), err)
	}
	return &Redis{URL: rawURL, Config: cfg, Client: c, Real: real}
}

// WithDB returns the same server's URL with another DB number.
func (r *Redis) WithDB(db int) string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return r.URL
	}
	if u.Scheme == "unix" {
		q := u.Query()
		q.Set("db", fmt.Sprint(db))
		u.RawQuery = q.Encode()
		return u.String()
	}
	u.Path = fmt.Sprintf("/%d", db)
	return u.String()
}
