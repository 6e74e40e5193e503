package worker

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestDequeueQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := func(q string) []any {
		return []any{"asynq:{" + q + "}:pending", "asynq:{" + q + "}:paused", "asynq:{" + q + "}:active", "asynq:{" + q + "}:lease"}
	}
	cmd := func(args ...any) redis.Cmder { return redis.NewCmd(ctx, args...) }
	script := func(name string, n any, ks []any) redis.Cmder {
		return cmd(append(append([]any{name, "sha", n}, ks...), 1700000000, "asynq:{q}:t:")...)
	}
	for _, tc := range []struct {
		name string
		cmd  redis.Cmder
		want string // "" = not a dequeue
	}{
		{"evalsha", script("evalsha", 4, keys("critical")), "critical"},
		{"eval", script("eval", 4, keys("ckbench-1-default")), "ckbench-1-default"},
		{"EVALSHA", script("EVALSHA", 4, keys("low")), "low"},
		{"three keys", script("evalsha", 3, keys("low")[:3]), ""},
		{"other script", script("evalsha", 4, []any{"asynq:{a}:active", "asynq:{a}:lease", "asynq:{a}:t:1", "x"}), ""},
		{"mixed queues", script("evalsha", 4, append([]any{"asynq:{a}:pending", "asynq:{b}:paused"}, keys("a")[2:]...)), ""},
		{"not a script", cmd("get", "asynq:{a}:pending", "a", "b", "c", "d", "e"), ""},
		{"status cmd", redis.NewStatusCmd(ctx, append([]any{"evalsha", "sha", 4}, keys("a")...)...), ""},
	} {
		q, ok := dequeueQueue(tc.cmd)
		if (tc.want != "") != ok || q != tc.want {
			t.Errorf("%s: got (%q, %v), want %q", tc.name, q, ok, tc.want)
		}
	}
}

func BenchmarkDequeueQueueOtherCommand(b *testing.B) {
	c := redis.NewCmd(context.Background(), "evalsha", "sha", 5, "asynq:{q}:active", "asynq:{q}:lease", "asynq:{q}:t:1", "asynq:{q}:processed:2026-01-01", "asynq:{q}:processed", "1", 2, 3)
	b.ReportAllocs()
	for b.Loop() {
		dequeueQueue(c)
	}
}
