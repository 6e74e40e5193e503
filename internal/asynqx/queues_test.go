package asynqx_test

import (
	"context"
	"slices"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/asynqx"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// The keys RegisterQueues writes and cachekeeper reads are the ones asynq
// itself writes and reads: this test fails when an asynq upgrade moves them.
func TestQueueKeysMatchAsynq(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	insp := asynq.NewInspectorFromRedisClient(r.Client)

	// asynq's enqueue registers its queue in keys.AsynqQueues.
	c := asynq.NewClientFromRedisClient(r.Client)
	if _, err := c.Enqueue(asynq.NewTask("k", nil), asynq.Queue("used")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Client.SIsMember(ctx, keys.AsynqQueues, "used").Result(); !ok {
		t.Fatalf("asynq's enqueue did not add its queue to %s", keys.AsynqQueues)
	}

	// A queue registered here is one asynq's Inspector lists and reports on.
	if err := asynqx.RegisterQueues(ctx, r.Client, "fresh", "used"); err != nil {
		t.Fatal(err)
	}
	names, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"fresh", "used"}) {
		t.Fatalf("inspector lists %v, want [fresh used]", names)
	}
	info, err := insp.GetQueueInfo("fresh")
	if err != nil || info.Size != 0 || info.Paused {
		t.Fatalf("fresh queue: %+v, %v", info, err)
	}
	if got, err := asynqx.Registered(ctx, r.Client); err != nil || len(got) != 2 {
		t.Fatalf("Registered: %v, %v", got, err)
	}

	// asynq's pause flag is keys.AsynqPaused.
	if err := insp.PauseQueue("fresh"); err != nil {
		t.Fatal(err)
	}
	if p, err := asynqx.Paused(ctx, r.Client, "fresh"); err != nil || !p {
		t.Fatalf("asynq paused the queue but %s does not exist", keys.AsynqPaused("fresh"))
	}
	t.Logf("asynq keys: %s, %s", keys.AsynqQueues, keys.AsynqPaused("fresh"))
}
