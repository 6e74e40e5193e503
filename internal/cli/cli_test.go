package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// vitess's MySQL client logs through glog, whose init starts this.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer is a bytes.Buffer safe for a command writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func run(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := cli.Run(ctx, args, cli.IO{Stdout: &out, Stderr: &errb, Env: func(k string) string { return env[k] }})
	return result{code, out.String(), errb.String()}
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"enqueue", "bogus"}, `unknown subcommand "bogus" of 'cachekeeper enqueue' (subcommands: warm,`},
		{[]string{"enqueue", "warm", "--cache", "user"}, "--id must not be empty"},
		{[]string{"enqueue", "warm", "--id", "1"}, "--cache"},
		{[]string{"enqueue", "notify", "--channel", "c", "--in", "10x"}, `--in "10x" is not a duration: write it like 30s, 5m or 1h30m`},
		{[]string{"enqueue", "notify", "--channel", "c", "--at", "tomorrow"}, "RFC 3339"},
		{[]string{"enqueue", "notify", "--channel", "c", "--nope"}, "has no flag --nope (its flags: --channel"},
		{[]string{"enqueue", "invalidate-pattern", "--pattern", "*"}, "--yes"},
		{[]string{"enqueue", "invalidate", "--cache", "user", "--id", "1", "--key", "k"}, "cannot be combined"},
		{[]string{"enqueue", "notify", "--channel", "c", "-o", "xml"}, "--output"},
		{[]string{"enqueue", "session-cleanup", "--max-age", "-1h"}, "max-age"},
		{[]string{"config", "show", "--redis-url", "http://x"}, "redis.url"},
	}
	for _, c := range cases {
		res := run(t, ctx, nil, append(c.args, "--redis-url", r.URL)...)
		if c.args[0] == "config" {
			res = run(t, ctx, nil, c.args...)
		}
		if res.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, c.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%v: stderr %q, want one line containing %q", c.args, res.stderr, c.want)
		}
	}
	if n := r.Client.DBSize(ctx).Val(); n != 0 {
		t.Errorf("rejected commands left %d keys in Redis", n)
	}
}

func TestEnqueueAndWait(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}

	// Without a worker, --wait gives up after --wait-timeout with exit 1.
	res := run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--message", "m", "--wait", "--wait-timeout", "300ms")
	if res.code != cli.ExitRuntime || !strings.Contains(res.stderr, "is a worker running?") {
		t.Fatalf("wait without worker: %+v", res)
	}

	done := make(chan result, 1)
	go func() {
		done <- run(t, ctx, env, "worker", "--metrics-addr", "", "--servers", "1", "--concurrency", "2", "--log-level", "error")
	}()
	res = run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--message", "hello", "--wait", "--wait-timeout", "20s", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `"state":"completed"`) {
		t.Fatalf("enqueue --wait: %+v", res)
	}
	if !strings.Contains(res.stdout, `"receivers":0`) {
		t.Errorf("result not shown: %s", res.stdout)
	}
	cancel()
	select {
	case w := <-done:
		if w.code != 0 {
			t.Fatalf("worker exit %d: %s", w.code, w.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop")
	}
}

func TestEnqueueScheduledAndDuplicateID(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	args := []string{"enqueue", "notify", "--channel", "c", "--message", "m", "--in", "1h", "--task-id", "once", "--redis-url", r.URL}
	res := run(t, ctx, nil, args...)
	if res.code != 0 || !strings.Contains(res.stdout, "(scheduled) to run at") {
		t.Fatalf("scheduled enqueue: %+v", res)
	}
	res = run(t, ctx, nil, args...)
	if res.code != cli.ExitUsage || !strings.Contains(res.stderr, `"once" already exists`) {
		t.Fatalf("duplicate id: %+v", res)
	}
}

func TestUnreachableRedisExit1(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "enqueue", "notify", "--channel", "c", "--redis-url", "redis://127.0.0.1:1/0")
	if res.code != cli.ExitRuntime || !strings.Contains(res.stderr, "unreachable") {
		t.Fatalf("%+v", res)
	}
}

func TestConfigShowRedactsAndCheckReports(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ck.yaml")
	body := "redis:\n  url: redis://admin:hunter2@example:6379/0\ndatabase:\n  url: sqlite://" + filepath.Join(dir, "x.db") + "\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	res := run(t, context.Background(), nil, "config", "show", "--config", cfgPath)
	if res.code != 0 || strings.Contains(res.stdout, "hunter2") || !strings.Contains(res.stdout, "admin:xxxxx@example") {
		t.Fatalf("config show: %+v", res)
	}
	res = run(t, context.Background(), nil, "config", "check", "--config", cfgPath, "--redis-url", r.URL)
	if res.code != 0 || !strings.Contains(res.stdout, "ok   redis") || !strings.Contains(res.stdout, "ok   database") {
		t.Fatalf("config check: %+v", res)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("redis:\n  ulr: x\n"), 0o600)
	res = run(t, context.Background(), nil, "config", "check", "--config", bad)
	if res.code != cli.ExitUsage || !strings.Contains(res.stdout, "bad.yaml: redis.ulr (line 2) is not a setting; did you mean url?") || strings.Contains(res.stderr, "ulr") {
		t.Fatalf("bad config: %+v", res)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "cachekeeper ") {
		t.Fatalf("%+v", res)
	}
}
