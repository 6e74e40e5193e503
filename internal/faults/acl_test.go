package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// limitedUser is the example user of docs/reliability.md ("Redis
// permissions a worker needs"), limited to the application's patterns.
const limitedUser = "on >secret ~asynq:* ~cachekeeper:* ~{cachekeeper:inbox}* ~user:* &asynq:cancel &cachekeeper:events " +
	"+@read +@write +@list +@sortedset +@hash +@keyspace +@connection +@transaction +@scripting +@pubsub +time"

// TestWorkerRedisPermissions starts the worker as a Redis user limited to
// what docs/reliability.md lists: it starts and runs an invalidation; the
// same user without EVALSHA is refused at start (exit 2, the rule to add),
// before anything runs.
func TestWorkerRedisPermissions(t *testing.T) {
	t.Parallel()
	srv := testenv.NewServer(t)
	r := testenv.Connect(t, "redis://"+srv.Addr)
	ctx := context.Background()
	setUser := func(name, rule string) {
		if err := r.Client.Do(ctx, append([]any{"ACL", "SETUSER", name}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	setUser("cachekeeper", limitedUser)
	setUser("noeval", limitedUser+" -evalsha")
	plain := func(user string) string {
		return writeConfig(t, notifyConfig(fmt.Sprintf("redis: {url: \"redis://%s:secret@%s/0\"}", user, srv.Addr)))
	}

	refused := start(t, "worker without EVALSHA", "worker", "--config", plain("noeval"))
	refused.waitExit(t, 15*time.Second)
	if code := refused.cmd.ProcessState.ExitCode(); code != 2 || refused.count("ACL SETUSER noeval +evalsha") != 1 || refused.count("worker started") != 0 {
		t.Fatalf("worker as a user without EVALSHA: exit %d; want 2 naming the rule; log:\n%s", code, refused.logs.String())
	}
	t.Logf("refused at start: %s", strings.TrimSpace(refused.logs.String()))

	startedWorker(t, "worker", plain("cachekeeper"))
	r.Client.Set(ctx, "user:1", "v", 0)
	info, err := tasks.NewClientFromRedis(r.Client).Enqueue(ctx, &tasks.InvalidateArgs{Keys: []string{"user:1"}}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	waitUntil(t, 20*time.Second, "invalidation done as the limited user", func() bool { return taskState(insp, info.Queue, info.ID) == asynq.TaskStateCompleted })
	if r.Client.Exists(ctx, "user:1").Val() != 0 {
		t.Error("user:1 still there")
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
