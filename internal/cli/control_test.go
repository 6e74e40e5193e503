package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
)

func TestControlCommands(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	enq := func(id, queue string) {
		t.Helper()
		if res := run(t, ctx, env, "enqueue", "notify", "--channel", "c", "--in", "1h", "--task-id", id, "--queue", queue); res.code != 0 {
			t.Fatalf("enqueue %s: %+v", id, res)
		}
	}
	enq("a", "default")
	enq("b", "default")
	enq("c", "default")
	enq("same", "default")
	enq("same", "low")
	expect := func(wantCode int, want string, args ...string) {
		t.Helper()
		res := run(t, ctx, env, args...)
		out := res.stdout + res.stderr
		if res.code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("%q: exit %d, out %q; want exit %d and %q", args, res.code, out, wantCode, want)
		}
	}
	state := func(queue, id string) asynq.TaskState {
		t.Helper()
		info, err := insp.GetTaskInfo(queue, id)
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		return info.State
	}

	expect(0, "queue default paused", "queues", "pause", "default")
	if q, _ := insp.GetQueueInfo("default"); !q.Paused {
		t.Fatal("queue not paused")
	}
	expect(2, "already paused", "queues", "pause", "default")
	expect(0, `"paused":false`, "queues", "resume", "default", "-o", "json")
	expect(cli.ExitNotFound, `queue "nosuch" does not exist (queues: critical, default, low)`, "queues", "pause", "nosuch")

	expect(0, "archived", "task", "archive", "a")
	if s := state("default", "a"); s != asynq.TaskStateArchived {
		t.Fatalf("a is %s", s)
	}
	expect(2, "several queues (default, low): give --queue", "task", "delete", "same")
	expect(0, "deleted", "task", "delete", "same", "--queue", "low")
	if _, err := insp.GetTaskInfo("low", "same"); err == nil {
		t.Fatal("task same still in low")
	}
	expect(cli.ExitNotFound, `no task "nope" in any queue`, "task", "delete", "nope")
	expect(2, "is scheduled, not active", "task", "cancel", "b")

	expect(0, "archived", "task", "archive", "b")
	expect(0, "2 archived tasks of queue default moved to pending", "task", "run", "--all", "--queue", "default", "--state", "archived")
	if s := state("default", "b"); s != asynq.TaskStatePending {
		t.Fatalf("b is %s after run --all", s)
	}
	expect(2, "--all needs --state, one of archived, retry, scheduled", "task", "run", "--all", "--queue", "default")
	expect(2, "--all needs --queue", "task", "delete", "--all", "--state", "pending")
	expect(2, "this would delete 2 pending tasks of queue default: add --yes", "task", "delete", "--all", "--queue", "default", "--state", "pending")
	if q, _ := insp.GetQueueInfo("default"); q.Pending != 2 {
		t.Fatalf("pending %d after a refused delete --all", q.Pending)
	}
	expect(0, `"count":2`, "task", "delete", "--all", "--queue", "default", "--state", "pending", "--yes", "-o", "json")
	if q, _ := insp.GetQueueInfo("default"); q.Pending != 0 || q.Scheduled != 2 {
		t.Fatalf("after delete --all: %+v", q)
	}
}

// A running worker dead-letters bad inbox entries; the CLI lists them with
// the reason, replays one fixed and purges the rest.
func TestInboxDeadCommands(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	done := make(chan result, 1)
	go func() {
		done <- run(t, ctx, env, "worker", "--metrics-addr", "", "--servers", "1", "--log-level", "error")
	}()
	k := keys.Default()
	for _, e := range []string{`{"kind":"nope"}`, `not json`, `{"kind":"notify:publish","args":{}}`} {
		r.Client.LPush(ctx, k.Inbox(), e)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r.Client.LLen(ctx, keys.DeadLetter(k.Inbox())).Val() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("worker did not dead-letter 3 entries in 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := run(t, ctx, env, "inbox", "dead")
	if res.code != 0 || !strings.Contains(res.stdout, `unknown kind "nope"`) || !strings.Contains(res.stdout, "not valid JSON") || !strings.Contains(res.stdout, "(3 shown of 3 dead letters)") {
		t.Fatalf("inbox dead: %+v", res)
	}
	res = run(t, ctx, env, "inbox", "dead", "list", "-o", "json")
	if res.code != 0 || strings.Count(res.stdout, "\n") != 3 || !strings.Contains(res.stdout, `"index":0,`) {
		t.Fatalf("inbox dead list -o json: %+v", res)
	}
	res = run(t, ctx, env, "inbox", "dead", "replay", "--index", "2", "--entry", `{"kind":"notify:publish","args":{"channel":"c","message":"m"},"options":{"task_id":"fixed","process_in":"1h"}}`)
	if res.code != 0 || !strings.Contains(res.stdout, "1 dead letters pushed back") {
		t.Fatalf("replay: %+v", res)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	for time.Now().Before(deadline) {
		if _, err := insp.GetTaskInfo("default", "fixed"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := insp.GetTaskInfo("default", "fixed"); err != nil {
		t.Fatalf("replayed entry not enqueued: %v", err)
	}
	res = run(t, ctx, env, "inbox", "dead", "purge", "--all")
	if res.code != cli.ExitUsage || !strings.Contains(res.stderr, "--yes") {
		t.Fatalf("purge without --yes: %+v", res)
	}
	res = run(t, ctx, env, "inbox", "dead", "purge", "--all", "--yes", "-o", "json")
	if res.code != 0 || !strings.Contains(res.stdout, `"count":2`) {
		t.Fatalf("purge: %+v", res)
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
