package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// The dead-letter list is trimmed on write to DeadMax, newest kept; a dead
// letter replayed with a fixed entry leaves the list and becomes a job.
func TestDeadLettersCappedListedAndReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.DeadMax = 2
	run(t, cfg)
	for i := range 5 {
		b.push(t, fmt.Sprintf(`{"kind":"no:such:%d"}`, i))
		waitFor(t, "entry dead-lettered", func() bool { return b.listLen(inboxKey) == 0 && b.listLen(processingKey) == 0 })
	}
	ctx := context.Background()
	waitFor(t, "list trimmed to 2", func() bool { return b.listLen(deadKey) == 2 })
	recs, err := inbox.ListDead(ctx, b.r.Client, inboxKey, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Entry != `{"kind":"no:such:4"}` || recs[1].Entry != `{"kind":"no:such:3"}` || recs[0].Error == "" {
		t.Fatalf("dead letters %+v: want the two newest with reasons", recs)
	}
	fixed := `{"kind":"notify:publish","args":{"channel":"c","message":"m"}}`
	if err := inbox.ReplayDead(ctx, b.r.Client, inboxKey, recs[0].Raw, fixed); err != nil {
		t.Fatal(err)
	}
	if err := inbox.ReplayDead(ctx, b.r.Client, inboxKey, recs[0].Raw, fixed); !errors.Is(err, inbox.ErrDeadLetterGone) {
		t.Fatalf("second replay of the same record = %v, want ErrDeadLetterGone", err)
	}
	waitFor(t, "replayed entry enqueued", func() bool {
		return len(b.tasksIn(t, tasks.QueueDefault, asynq.TaskStatePending)) == 1
	})
	if n, _ := inbox.CountDead(ctx, b.r.Client, inboxKey); n != 1 {
		t.Errorf("%d dead letters after replaying one of 2", n)
	}
	if n, err := inbox.PurgeAllDead(ctx, b.r.Client, inboxKey); err != nil || n != 1 || b.listLen(deadKey) != 0 {
		t.Errorf("PurgeAllDead = %d, %v; list now %d", n, err, b.listLen(deadKey))
	}
}
