package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// On a fresh Redis, the configured queues are listed with zero counts and
// can be paused before any job used them, without a worker (the CLI
// registers the queue it pauses) and with one (the worker registers every
// queue it serves when it starts).
func TestConfiguredQueuesExistFromTheStart(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	insp := asynq.NewInspectorFromRedisClient(r.Client)

	res := run(t, ctx, env, "queues")
	if res.code != 0 {
		t.Fatalf("queues: %+v", res)
	}
	for _, q := range []string{"critical", "default", "low"} {
		if !strings.Contains(res.stdout, "\n"+q+" ") {
			t.Fatalf("queues on a fresh Redis does not list %s:\n%s", q, res.stdout)
		}
	}
	if names, _ := insp.Queues(); len(names) != 0 {
		t.Fatalf("listing queues registered %v with asynq", names)
	}
	res = run(t, ctx, env, "queues", "pause", "low")
	if res.code != 0 || !strings.Contains(res.stdout, "queue low paused") {
		t.Fatalf("queues pause low before any job: %+v", res)
	}
	if q, err := insp.GetQueueInfo("low"); err != nil || !q.Paused || q.Size != 0 {
		t.Fatalf("low after pause: %+v, %v", q, err)
	}
	res = run(t, ctx, env, "queues", "pause", "nosuch")
	if res.code != cli.ExitNotFound || !strings.Contains(res.stderr, `queue "nosuch" does not exist (queues: critical, default, low)`) {
		t.Fatalf("pause nosuch: %+v", res)
	}

	// A worker registers what it serves, the fast lane's queue included.
	done := make(chan result, 1)
	go func() {
		done <- run(t, ctx, env, "worker", "--metrics-addr", "", "--servers", "1", "--log-level", "error")
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		names, _ := insp.Queues()
		if len(names) == 3 {
			t.Logf("the worker registered %v", names)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker registered %v in 15s, want critical, default, low", names)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res = run(t, ctx, env, "queues", "-o", "json")
	if res.code != 0 || strings.Count(res.stdout, `"pending":0`) != 3 || !strings.Contains(res.stdout, `"paused":true,"pending":0,"processed_today":0,"queue":"low"`) {
		t.Fatalf("queues -o json with a worker: %+v", res)
	}
	res = run(t, ctx, env, "queues", "resume", "low")
	if res.code != 0 || !strings.Contains(res.stdout, "queue low resumed") {
		t.Fatalf("resume low: %+v", res)
	}
	res = run(t, ctx, env, "queues", "pause", "critical")
	if res.code != 0 {
		t.Fatalf("pause critical (the fast lane's queue): %+v", res)
	}
	cancel()
	select {
	case res := <-done:
		if res.code != 0 {
			t.Fatalf("worker: %+v", res)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not stop within 40s")
	}
}
