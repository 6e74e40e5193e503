package cli_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// configFile writes body as a config file and returns its path.
func configFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cachekeeper.yaml")
	writeConfig(t, p, body)
	return p
}

func TestVersionJSON(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "version", "-o", "json")
	if res.code != 0 {
		t.Fatalf("version -o json: exit %d, stderr %q", res.code, res.stderr)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("version -o json printed %q: %v", res.stdout, err)
	}
	for _, k := range []string{"cachekeeper", "go", "asynq"} {
		if v[k] == "" {
			t.Errorf("version -o json lacks %q: %s", k, res.stdout)
		}
	}
}

// Without --url, healthcheck probes the port of the configuration's
// worker.metrics_addr.
func TestHealthcheckReadsMetricsAddrFromTheConfig(t *testing.T) {
	t.Parallel()
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			hits++
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port} {
		cfg := configFile(t, "worker:\n  metrics_addr: \""+addr+"\"\n")
		res := run(t, context.Background(), nil, "healthcheck", "--config", cfg)
		if res.code != 0 {
			t.Errorf("healthcheck with metrics_addr %s: exit %d, stderr %q", addr, res.code, res.stderr)
		}
	}
	if hits != 2 {
		t.Errorf("the worker's /readyz was asked %d times, want 2", hits)
	}
	env := map[string]string{"CACHEKEEPER_METRICS_ADDR": "127.0.0.1:" + port}
	if res := run(t, context.Background(), env, "healthcheck", "--config", configFile(t, "log: {level: info}\n")); res.code != 0 {
		t.Errorf("healthcheck with CACHEKEEPER_METRICS_ADDR: exit %d, stderr %q", res.code, res.stderr)
	}
	res := run(t, context.Background(), nil, "healthcheck", "--config", configFile(t, "worker:\n  metrics_addr: \"\"\n"))
	if res.code != 2 || !strings.Contains(res.stderr, "--url") {
		t.Errorf("healthcheck with no metrics_addr: exit %d, stderr %q; want 2 and a hint to give --url", res.code, res.stderr)
	}
}

// A database that answers and refuses the configured credentials or
// database is a configuration error: the worker does not start (exit 2, one
// line), and config check says so once, on stdout. A database that is down
// is not (the worker starts degraded; see TestDatabaseDown).
func TestDatabaseRefusalIsAConfigurationError(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	base := os.Getenv("CACHEKEEPER_TEST_DATABASE_URL")
	if base == "" {
		base = testenv.DefaultPostgresURL
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/ck_no_such_database"
	urls := map[string]string{"postgres, no such database": u.String()}
	my, err := url.Parse(testenv.DefaultMySQLURL)
	if err != nil {
		t.Fatal(err)
	}
	if env := os.Getenv("CACHEKEEPER_TEST_MYSQL_URL"); env == "" && my.User.Username() == "root" {
		my.User = url.UserPassword("root", "not-the-password")
		urls["mysql, wrong password"] = my.String()
	}
	for name, dbURL := range urls {
		cfg := configFile(t, "redis:\n  url: "+r.URL+"\ndatabase:\n  url: "+dbURL+"\nworker:\n  metrics_addr: \"\"\n"+
			"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id FROM users WHERE id IN (?)\n")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		check := run(t, ctx, nil, "config", "check", "--config", cfg)
		if strings.Contains(check.stdout, "FAIL database") && strings.Contains(check.stdout, "unreachable") {
			cancel()
			t.Logf("%s: the server is not there (%s); skipped", name, strings.TrimSpace(check.stdout))
			continue
		}
		if check.code != cli.ExitUsage || strings.Count(check.stdout, "FAIL") != 1 || !strings.Contains(check.stdout, "FAIL database") {
			t.Errorf("%s: config check exit %d stdout %q, want exit 2 and one FAIL database line", name, check.code, check.stdout)
		}
		if strings.Count(check.stdout, "SQLSTATE") > 1 || strings.Count(check.stdout, "FATAL") > 1 {
			t.Errorf("%s: the database's error is repeated: %q", name, check.stdout)
		}
		start := time.Now()
		work := run(t, ctx, nil, "worker", "--config", cfg)
		cancel()
		t.Logf("%s: worker exit %d after %s: %s", name, work.code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(work.stderr))
		last := strings.TrimSpace(work.stderr)
		if i := strings.LastIndex(last, "\n"); i >= 0 {
			last = last[i+1:]
		}
		if work.code != cli.ExitUsage || !strings.HasPrefix(last, "cachekeeper: ") || !strings.Contains(last, "database.url") || !strings.Contains(last, "refused") {
			t.Errorf("%s: worker exit %d, last line %q; want exit 2 and one line naming database.url", name, work.code, last)
		}
		if strings.Contains(work.stderr, "retrying in the background") {
			t.Errorf("%s: the worker took a refusal for an outage: %q", name, work.stderr)
		}
	}
}

// --wait tells what happened: a paused queue is named while the task waits
// on it, and a warm whose ids the database rejects exits 1 naming them.
func TestWaitNamesAPausedQueueAndFailsOnInvalidIDs(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	db := testenv.Postgres(t)
	if _, err := db.Exec("CREATE TABLE users (id integer PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@example.com')"); err != nil {
		t.Fatal(err)
	}
	cfg := configFile(t, "redis:\n  url: "+r.URL+"\ndatabase:\n  url: "+db.Config.URL+"\n"+
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM users WHERE id IN (?)\n")
	ctx := context.Background()

	if res := run(t, ctx, nil, "enqueue", "notify", "--channel", "c", "--message", "first", "--queue", "low", "--config", cfg); res.code != 0 {
		t.Fatalf("enqueue on low: %+v", res)
	}
	if res := run(t, ctx, nil, "queues", "pause", "low", "--config", cfg); res.code != 0 {
		t.Fatalf("queues pause low: %+v", res)
	}
	res := run(t, ctx, nil, "enqueue", "notify", "--channel", "c", "--message", "m", "--queue", "low", "--wait", "--wait-timeout", "1500ms", "--config", cfg)
	t.Logf("wait on a paused queue: exit %d, stderr %q", res.code, res.stderr)
	if res.code != cli.ExitRuntime || !strings.Contains(res.stderr, "queue low is paused") || !strings.Contains(res.stderr, "cachekeeper queues resume low") {
		t.Errorf("wait on a paused queue: exit %d stderr %q, want exit 1 naming the pause and the way out", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, "is a worker running?") {
		t.Errorf("a paused queue is blamed on a missing worker: %q", res.stderr)
	}

	startWorker(t, nil, "--config", cfg)
	res = run(t, ctx, nil, "enqueue", "warm", "--cache", "user", "--id", "abc", "--id", "1", "--wait", "--wait-timeout", "20s", "--config", cfg)
	t.Logf("warm of an invalid id: exit %d, stderr %q", res.code, res.stderr)
	if res.code != cli.ExitRuntime || !strings.Contains(res.stderr, "1 id(s) (abc) are not valid values") {
		t.Errorf("warm --id abc --wait: exit %d stderr %q, want exit 1 naming abc", res.code, res.stderr)
	}
	if res := run(t, ctx, nil, "enqueue", "warm", "--cache", "user", "--id", "1", "--wait", "--wait-timeout", "20s", "--config", cfg); res.code != 0 {
		t.Errorf("warm --id 1 --wait: %+v", res)
	}
}

// Wording and exit codes: a flag named once with what it takes, not found
// is 3, an address in use is a runtime failure (1), and task list says what
// it lists.
func TestMessagesAndExitCodes(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	ctx := context.Background()
	if res := run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--message", "m"); res.code != 0 {
		t.Fatalf("enqueue: %+v", res)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"enqueue", "warm", "--cache", "usr", "--id", "1"}, cli.ExitUsage, `--cache "usr" is not configured`},
		{[]string{"enqueue", "notify", "--channel", "c", "--message", "m", "--queue", "critcal"}, cli.ExitUsage, `--queue "critcal" is not served by the workers (queues: critical, default, low)`},
		{[]string{"enqueue", "notify", "--channel", "c", "--message", "m", "--in", "5min"}, cli.ExitUsage, `--in "5min" is not a duration: write it like 30s, 5m or 1h30m`},
		{[]string{"enqueue", "warm-all", "--cache", "user", "--max-keys-per-second", "lots"}, cli.ExitUsage, `--max-keys-per-second "lots" is not a whole number`},
		{[]string{"task", "show", "nosuchid"}, cli.ExitNotFound, `no task "nosuchid"`},
		{[]string{"task", "list", "--queue", "nosuchqueue"}, cli.ExitNotFound, `queue "nosuchqueue" does not exist`},
		{[]string{"inbox", "dead", "replay", "--index", "5"}, cli.ExitNotFound, "no dead letter at index 5"},
		{[]string{"worker", "--metrics-addr", busy.Addr().String()}, cli.ExitRuntime, busy.Addr().String() + " is already in use by another process"},
	}
	for _, c := range cases {
		res := run(t, ctx, env, c.args...)
		line := strings.TrimSpace(res.stderr)
		if i := strings.LastIndex(line, "\n"); i >= 0 {
			line = line[i+1:]
		}
		if res.code != c.code || !strings.Contains(line, c.want) {
			t.Errorf("%v: exit %d, last line %q; want exit %d and %q", c.args, res.code, line, c.code, c.want)
		}
		for _, doubled := range []string{"--cache cache", "--queue queue", " -in", " -max-keys"} {
			if strings.Contains(line, doubled) {
				t.Errorf("%v: %q says %q", c.args, line, doubled)
			}
		}
	}
	res := run(t, ctx, env, "task", "list")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "1 pending task(s) of queue default (choose with --queue and --state") {
		t.Errorf("task list with no flags: %+v; want a first line saying what it lists", res)
	}
}

// Completion (what the bash and zsh scripts ask): flags after "-", cache
// names, queues, task ids and subcommands.
func TestCompletionCandidates(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	cfg := configFile(t, "redis:\n  url: "+r.URL+"\ncaches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id FROM users WHERE id IN (?)\n"+
		"worker:\n  queues: {critical: 6, default: 3, bulk: 1}\n")
	ctx := context.Background()
	res := run(t, ctx, nil, "enqueue", "notify", "--channel", "c", "--message", "m", "--task-id", "job-42", "--config", cfg)
	if res.code != 0 {
		t.Fatalf("enqueue: %+v", res)
	}
	const gen = "--generate-bash-completion"
	cases := []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{gen, ""}, []string{"worker", "enqueue", "task", "queues"}, nil},
		{[]string{gen, "--"}, []string{"--config", "--redis-url"}, []string{"worker"}},
		{[]string{"enqueue", "warm", gen, "--"}, []string{"--cache", "--id", "--wait", "--queue"}, []string{"--pattern"}},
		{[]string{"-c", cfg, "enqueue", "warm", "--cache", gen, ""}, []string{"user"}, []string{"--cache"}},
		{[]string{"enqueue", "notify", "--config", cfg, "--queue", gen, "b"}, []string{"critical", "default", "bulk"}, nil},
		{[]string{"-c", cfg, "task", "show", gen, ""}, []string{"job-42"}, nil},
		{[]string{"task", "list", "--state", gen, ""}, []string{"pending", "archived"}, nil},
		{[]string{"task", gen, ""}, []string{"show", "list", "cancel"}, []string{"worker"}},
		{[]string{"completion", gen, ""}, []string{"bash", "zsh", "fish"}, nil},
	}
	for _, c := range cases {
		res := run(t, ctx, nil, c.args...)
		got := strings.Fields(res.stdout)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("%v: candidates %v lack %q", c.args, got, w)
			}
		}
		for _, w := range c.not {
			if slices.Contains(got, w) {
				t.Errorf("%v: candidates %v include %q", c.args, got, w)
			}
		}
	}
}

// The top-level help shows the flags that work before the command name.
func TestTopLevelHelpShowsConnectionFlags(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "--help")
	for _, want := range []string{"CONNECTION OPTIONS", "--config value, -c value", "--redis-url", "--database-url", "--log-level", "3 not found"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("cachekeeper --help lacks %q:\n%s", want, res.stdout)
		}
	}
}
