package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// `enqueue invalidate --coalesce` adds the ids to the cache's pending
// invalidations (no job), and refuses, changing nothing, the flags of a job
// of its own.
func TestEnqueueInvalidateCoalesce(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	cfg := changesConfigFile(t, changesConfig)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cache", "user"}, "--id must not be empty"},
		{[]string{"--cache", "user", "--id", "1", "--rewarm"}, "--coalesce cannot be combined with --rewarm"},
		{[]string{"--cache", "user", "--id", "1", "--task-id", "t"}, "--coalesce cannot be combined with --task-id"},
		{[]string{"--cache", "user", "--id", "1", "--wait"}, "--coalesce cannot be combined with --wait"},
		{[]string{"--cache", "nope", "--id", "1"}, `"nope" is not configured`},
	} {
		args := append([]string{"enqueue", "invalidate", "--coalesce", "-c", cfg, "--redis-url", r.URL}, c.args...)
		res := run(t, ctx, nil, args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, c.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and %q", c.args, res.code, res.stderr, c.want)
		}
	}
	if n := r.Client.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("refused invocations left %d keys", n)
	}
	res := run(t, ctx, nil, "enqueue", "invalidate", "--coalesce", "-c", cfg, "--redis-url", r.URL, "--cache", "user", "--id", "7", "--id", "8")
	if res.code != 0 || !strings.Contains(res.stdout, "added 2 ids of cache user") {
		t.Fatalf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
	ids := r.Client.ZRange(ctx, keys.Default().InvalidatePending("user"), 0, -1).Val()
	t.Logf("pending after the call: %v", ids)
	if strings.Join(ids, ",") != "7,8" {
		t.Fatalf("pending ids %v, want 7,8", ids)
	}
	if q := r.Client.Keys(ctx, "asynq:*").Val(); len(q) != 0 {
		t.Fatalf("a job was enqueued: %v", q)
	}
}
