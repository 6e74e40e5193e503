package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Every hole of issue 10 closed, through the CLI, the Go client, the inbox
// and raw asynq tasks the worker runs, on a private redis-server holding
// real scheduled, retrying and archived tasks: afterwards they are all
// still there and none of asynq's keys of them has a TTL.
func TestNoProducerTouchesTheQueue(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	raw := asynq.NewClientFromRedisClient(r.Client)
	insp := asynq.NewInspectorFromRedisClient(r.Client)

	base := startWorker(t, env)
	_ = base
	// Real tasks in every state: scheduled (an hour away), retrying (a kind
	// no handler knows, retried by asynq), archived (an invalid payload).
	sched, err := raw.Enqueue(asynq.NewTask(tasks.KindNotifyPublish, []byte(`{"channel":"c","message":"m"}`)), asynq.ProcessIn(time.Hour), asynq.Queue("default"))
	if err != nil {
		t.Fatal(err)
	}
	retry, err := raw.Enqueue(asynq.NewTask("probe:unknown", nil), asynq.Queue("low"), asynq.MaxRetry(20))
	if err != nil {
		t.Fatal(err)
	}
	archived, err := raw.Enqueue(asynq.NewTask(tasks.KindInvalidate, []byte(`{"keyz": 1}`)), asynq.Queue("critical"))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, insp, "low", retry.ID, asynq.TaskStateRetry)
	waitState(t, insp, "critical", archived.ID, asynq.TaskStateArchived)

	hostileKeys := []string{"asynq:{default}:scheduled", "asynq:queues", "asynq:{low}:retry", "asynq:{critical}:archived", "{cachekeeper:inbox}:dead"}
	hostilePatterns := []string{"asynq:*", "asynq:{default}:*", "{cachekeeper:*", "cachekeeper:*"}

	// The CLI: exit 2, nothing enqueued.
	for _, k := range hostileKeys {
		res := run(t, ctx, env, "enqueue", "invalidate", "--key", "user:1", "--key", k)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, "internal key") {
			t.Errorf("enqueue invalidate --key %s: %+v, want exit 2", k, res)
		}
	}
	for _, p := range hostilePatterns {
		for _, cmd := range [][]string{{"enqueue", "invalidate-pattern", "--yes", "--pattern", p}, {"enqueue", "ratelimit-prune", "--pattern", p}, {"enqueue", "session-cleanup", "--pattern", p}} {
			if res := run(t, ctx, env, cmd...); res.code != cli.ExitUsage || !strings.Contains(res.stderr, "only matches keys of") {
				t.Errorf("%v: %+v, want exit 2", cmd, res)
			}
		}
	}
	if res := run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--message", "m", "--queue", "nosuchqueue"); res.code != cli.ExitUsage ||
		!strings.Contains(res.stderr, `--queue "nosuchqueue" is not served by the workers (queues: critical, default, low)`) {
		t.Errorf("--queue nosuchqueue: %+v", res)
	}
	if res := run(t, ctx, env, "enqueue", "warm", "--cache", "usr", "--id", "1"); res.code != cli.ExitUsage || !strings.Contains(res.stderr, `--cache "usr" is not configured`) {
		t.Errorf("--cache usr: %+v", res)
	}

	// The Go client.
	client := tasks.NewClientFromRedis(r.Client, tasks.WithQueues("critical", "default", "low"))
	if _, err := client.InvalidateKeys(ctx, hostileKeys); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Errorf("InvalidateKeys of asynq's keys: %v", err)
	}
	for _, p := range hostilePatterns {
		if _, err := client.PruneRateLimits(ctx, tasks.RateLimitPruneArgs{Pattern: p}); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("PruneRateLimits(%q): %v", p, err)
		}
		if _, err := client.InvalidatePattern(ctx, p); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("InvalidatePattern(%q): %v", p, err)
		}
	}
	if _, err := client.Publish(ctx, "c", "m", tasks.Queue("nosuchqueue")); !errors.Is(err, tasks.ErrUnknownName) {
		t.Errorf("Publish on an unserved queue: %v", err)
	}

	// The inbox: dead-lettered with the reason.
	entries := []string{
		`{"kind": "cache:invalidate", "args": {"keys": ["asynq:{default}:scheduled", "asynq:queues"]}}`,
		`{"kind": "ratelimit:prune", "args": {"pattern": "asynq:*"}}`,
		`{"kind": "session:cleanup", "args": {"pattern": "{cachekeeper:inbox}*"}}`,
		`{"kind": "cache:invalidate_pattern", "args": {"pattern": "asynq:*", "allow_all": true}}`,
	}
	for _, e := range entries {
		r.Client.LPush(ctx, "cachekeeper:inbox", e)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.Client.LLen(ctx, "{cachekeeper:inbox}:dead").Val() < int64(len(entries)) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entries dead-lettered", r.Client.LLen(ctx, "{cachekeeper:inbox}:dead").Val(), len(entries))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range r.Client.LRange(ctx, "{cachekeeper:inbox}:dead", 0, -1).Val() {
		var rec struct{ Error string }
		if json.Unmarshal([]byte(d), &rec) != nil || !strings.Contains(rec.Error, "internal key") {
			t.Errorf("dead letter %s does not give the reason", d)
		}
	}

	// Raw asynq tasks that skipped every producer check: archived by the
	// worker's adapter, or (a broad pattern) run with asynq's keys skipped.
	var rawIDs []string
	for _, p := range []string{`{"keys": ["asynq:{default}:scheduled", "asynq:queues"]}`} {
		info, err := raw.Enqueue(asynq.NewTask(tasks.KindInvalidate, []byte(p)), asynq.Queue("critical"))
		if err != nil {
			t.Fatal(err)
		}
		rawIDs = append(rawIDs, info.ID)
	}
	for _, p := range []string{`{"pattern": "asynq:*"}`} {
		info, err := raw.Enqueue(asynq.NewTask(tasks.KindRateLimitPrune, []byte(p)), asynq.Queue("low"))
		if err != nil {
			t.Fatal(err)
		}
		rawIDs = append(rawIDs, info.ID)
	}
	waitState(t, insp, "critical", rawIDs[0], asynq.TaskStateArchived)
	waitState(t, insp, "low", rawIDs[1], asynq.TaskStateArchived)
	broad := []struct{ kind, payload, queue string }{
		{tasks.KindRateLimitPrune, `{"pattern": "a*", "window": "1s"}`, "low"},
		{tasks.KindInvalidatePattern, `{"pattern": "*", "allow_all": true}`, "critical"},
		{tasks.KindSessionCleanup, `{"pattern": "a*"}`, "low"},
	}
	for _, b := range broad {
		info, err := raw.Enqueue(asynq.NewTask(b.kind, []byte(b.payload)), asynq.Queue(b.queue), asynq.Retention(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, insp, b.queue, info.ID, asynq.TaskStateCompleted)
	}

	// Everything is still there, and nothing of it expires.
	for _, c := range []struct{ queue, id string }{{"default", sched.ID}, {"low", retry.ID}, {"critical", archived.ID}} {
		info, err := insp.GetTaskInfo(c.queue, c.id)
		if err != nil {
			t.Fatalf("task %s on %s is gone: %v", c.id, c.queue, err)
		}
		key := "asynq:{" + c.queue + "}:t:" + c.id
		if ttl := r.Client.TTL(ctx, key).Val(); ttl != -1 {
			t.Errorf("task hash %s (%s) has TTL %v", key, info.State, ttl)
		}
	}
	for _, k := range []string{"asynq:queues", "asynq:{default}:scheduled", "asynq:{low}:retry", "asynq:{critical}:archived"} {
		if ttl := r.Client.TTL(ctx, k).Val(); ttl != -1 {
			t.Errorf("%s: TTL %v, want none (and the key present)", k, ttl)
		}
	}
}

func waitState(t *testing.T, insp *asynq.Inspector, queue, id string, want asynq.TaskState) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := insp.GetTaskInfo(queue, id)
		if err == nil && info.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s on %s: %+v %v, want state %s", id, queue, info, err, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
