package cli_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	_ "modernc.org/sqlite"
)

// config check refuses what the worker refuses at start-up, with the same
// message: here a cache whose key names a column its query does not return.
func TestConfigCheckRunsTheWorkersStartupChecks(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	write := func(name, cache string) string {
		p := filepath.Join(dir, name)
		body := "redis:\n  url: " + r.URL + "\ndatabase:\n  url: sqlite://" + dbPath + "\nworker:\n  metrics_addr: \"\"\ncaches:\n  user:\n" + cache
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM users WHERE id IN (?)\n")
	res := run(t, context.Background(), nil, "config", "check", "--config", good)
	if res.code != 0 || !strings.Contains(res.stdout, "ok   caches: 1 probed") {
		t.Fatalf("good config: %+v", res)
	}

	missing := write("missing.yaml", "    key: \"user:{org_id}:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM users WHERE id IN (?)\n")
	check := run(t, context.Background(), nil, "config", "check", "--config", missing)
	if check.code != cli.ExitUsage || !strings.Contains(check.stdout, "FAIL caches:") || !strings.Contains(check.stdout, "org_id") {
		t.Fatalf("config check of a key naming a missing column: %+v, want exit 2 naming org_id", check)
	}
	// Each FAIL is printed once, on stdout; stderr says the check failed.
	if strings.Contains(check.stderr, "org_id") || !strings.Contains(check.stderr, "config check failed: fix the configuration") {
		t.Fatalf("config check's stderr repeats a FAIL line or lacks the summary: %q", check.stderr)
	}
	work := run(t, context.Background(), nil, "worker", "--config", missing)
	if work.code != cli.ExitUsage {
		t.Fatalf("worker with the same config: %+v, want exit 2", work)
	}
	msg := func(stdout string) string {
		_, line, _ := strings.Cut(stdout, "FAIL caches: ")
		line, _, _ = strings.Cut(line, "\n")
		return line
	}
	if w := strings.TrimPrefix(strings.TrimSpace(work.stderr), "cachekeeper: "); !strings.HasSuffix(w, msg(check.stdout)) {
		t.Fatalf("messages differ:\n worker:       %s\n config check: %s", work.stderr, check.stdout)
	}

	badSQL := write("badsql.yaml", "    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM no_such_table WHERE id IN (?)\n")
	if res := run(t, context.Background(), nil, "config", "check", "--config", badSQL); res.code != cli.ExitUsage || !strings.Contains(res.stdout, "no_such_table") {
		t.Fatalf("a query on a missing table: %+v", res)
	}
	// An unreachable Redis is an outage, not a configuration error.
	if res := run(t, context.Background(), nil, "config", "check", "--config", good, "--redis-url", "redis://127.0.0.1:1/0"); res.code != cli.ExitRuntime {
		t.Fatalf("unreachable Redis: %+v, want exit 1", res)
	}
	// The UI rule is the worker's too.
	exposed := filepath.Join(dir, "ui.yaml")
	if err := os.WriteFile(exposed, []byte("redis:\n  url: "+r.URL+"\ndatabase:\n  url: sqlite://"+dbPath+"\nworker:\n  ui: true\n  metrics_addr: \":9090\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := run(t, context.Background(), nil, "config", "check", "--config", exposed); res.code != cli.ExitUsage || !strings.Contains(res.stdout, "FAIL ui:") {
		t.Fatalf("exposed UI: %+v", res)
	}
}

// A Redis user without a permission the worker needs (here EVAL and
// EVALSHA, and the events channel) is refused by config check and by the
// worker at start, exit 2, naming the ACL rule to add.
func TestWorkerRefusesARedisUserWithoutItsPermissions(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !strings.HasPrefix(r.URL, "unix://") {
		t.Skipf("needs a private redis-server (%s)", r.URL)
	}
	ctx := context.Background()
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "resetchannels", "&asynq:cancel", "+@all", "-eval", "-evalsha").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	url := "unix://app:pw@" + strings.TrimPrefix(r.URL, "unix://")
	if err := os.WriteFile(cfg, []byte("redis:\n  url: "+url+"\nworker:\n  metrics_addr: \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := run(t, ctx, nil, "config", "check", "--config", cfg)
	rule := `ACL SETUSER app &cachekeeper:events +eval +evalsha`
	if check.code != cli.ExitUsage || !strings.Contains(check.stdout, "FAIL redis permissions:") || !strings.Contains(check.stdout, rule) {
		t.Fatalf("config check: %+v, want exit 2 and the rule %q", check, rule)
	}
	work := run(t, ctx, nil, "worker", "--config", cfg)
	if work.code != cli.ExitUsage || !strings.Contains(work.stderr, rule) || strings.Contains(work.stderr, "worker started") {
		t.Fatalf("worker: %+v, want exit 2 before starting, naming %q", work, rule)
	}
	t.Logf("worker refused: %s", strings.TrimSpace(work.stderr))
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "app", "&cachekeeper:events", "+eval", "+evalsha").Err(); err != nil {
		t.Fatal(err)
	}
	if check := run(t, ctx, nil, "config", "check", "--config", cfg); check.code != 0 || !strings.Contains(check.stdout, "ok   redis permissions:") {
		t.Fatalf("config check after granting the rule: %+v", check)
	}
}
