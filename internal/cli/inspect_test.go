package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestInspectCommands(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	res := run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--message", "m", "--in", "1h", "--task-id", "t1")
	if res.code != 0 {
		t.Fatalf("enqueue: %+v", res)
	}
	res = run(t, ctx, env, "queues", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `"queue":"default"`) || !strings.Contains(res.stdout, `"scheduled":1`) {
		t.Fatalf("queues: %+v", res)
	}
	res = run(t, ctx, env, "task", "show", "t1")
	if res.code != 0 || !strings.Contains(res.stdout, "scheduled") || !strings.Contains(res.stdout, `{"channel":"c","message":"m"}`) {
		t.Fatalf("task show: %+v", res)
	}
	res = run(t, ctx, env, "task", "list", "--queue", "default", "--state", "scheduled")
	if res.code != 0 || !strings.Contains(res.stdout, "t1") {
		t.Fatalf("task list: %+v", res)
	}
	res = run(t, ctx, env, "task", "run", "t1")
	if res.code != 0 || !strings.Contains(res.stdout, "moved to pending") {
		t.Fatalf("task run: %+v", res)
	}
	res = run(t, ctx, env, "task", "show", "-o", "json", "t1")
	if res.code != 0 || !strings.Contains(res.stdout, `"state":"pending"`) {
		t.Fatalf("after run: %+v", res)
	}

	// Coalesced warms waiting for a worker are shown per configured cache.
	cfgPath := filepath.Join(t.TempDir(), "ck.yaml")
	if err := os.WriteFile(cfgPath, []byte(`caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email FROM users WHERE id IN (?)"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	warms := tasks.NewClientFromRedis(r.Client)
	if err := warms.WarmCache(ctx, "user", 1, 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := warms.WarmCache(ctx, "usr", 3); err != nil { // misspelt: no worker takes it
		t.Fatal(err)
	}
	res = run(t, ctx, env, "queues", "--config", cfgPath, "-o", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `{"cache":"user","configured":true,"pending_warm_ids":2,"served":false}`) ||
		!strings.Contains(res.stdout, `{"cache":"usr","configured":false,"pending_warm_ids":1,"served":false}`) {
		t.Fatalf("queues with a cache: %+v", res)
	}
	// A running worker marks the caches it serves.
	if err := r.Client.Set(ctx, keys.Default().WarmServed("user"), "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	res = run(t, ctx, env, "queues", "--config", cfgPath)
	if res.code != 0 || !strings.Contains(res.stdout, "PENDING WARM IDS") || !regexp.MustCompile(`(?m)^user\s+2\s*$`).MatchString(res.stdout) ||
		!regexp.MustCompile(`(?m)^usr\s+1\s+no running worker serves it, and it is not in this configuration`).MatchString(res.stdout) {
		t.Fatalf("queues table with a cache: %+v", res)
	}

	for _, bad := range []struct {
		args []string
		code int
	}{
		{[]string{"task", "show"}, cli.ExitUsage},
		{[]string{"task", "show", "nope"}, cli.ExitNotFound},
		{[]string{"task", "list", "--state", "sleeping"}, cli.ExitUsage},
		{[]string{"task", "list", "--queue", "missing"}, cli.ExitNotFound},
		{[]string{"task", "list", "--limit", "0"}, cli.ExitUsage},
	} {
		res = run(t, ctx, env, bad.args...)
		if res.code != bad.code || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%v: %+v, want exit %d with one line", bad.args, res, bad.code)
		}
	}
}
