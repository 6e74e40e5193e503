package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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

// An entry larger than MaxEntryBytes is dead-lettered unparsed, with its
// size and only its first DeadCopyBytes; one that is not UTF-8 is
// dead-lettered (never run with U+FFFD in place of its bytes) and keeps its
// exact bytes, so a replay pushes back what the producer pushed. Both, on
// the idle path and in a batch.
func TestDeadLettersOfOversizedAndNonUTF8Entries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cfg := b.config()
	cfg.MaxEntryBytes = 4096
	latin1 := "{\"kind\":\"cache:invalidate\",\"args\":{\"keys\":[\"user:caf\xe9\"]}}"
	big := `{"kind":"cache:invalidate","args":{"keys":["` + strings.Repeat("k", 50_000) + `"]}}`
	// Pushed before the bridge starts: taken as one batch.
	b.push(t, latin1, big)
	stop := run(t, cfg)
	waitFor(t, "batch dead-lettered", func() bool { return b.listLen(deadKey) == 2 && b.listLen(processingKey) == 0 })
	stop()
	// Pushed while it waits: the idle path, one at a time.
	run(t, cfg)
	time.Sleep(200 * time.Millisecond)
	b.push(t, latin1)
	b.push(t, big)
	waitFor(t, "idle entries dead-lettered", func() bool { return b.listLen(deadKey) == 4 && b.listLen(processingKey) == 0 })
	if n := len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)); n != 0 {
		t.Fatalf("%d jobs enqueued; want none (an invalidation of user:caf\uFFFD would miss the real key)", n)
	}
	recs, err := inbox.ListDead(ctx, b.r.Client, inboxKey, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		switch r.Size {
		case len(big):
			if !r.Truncated || len(r.Entry) != inbox.DeadCopyBytes || !strings.Contains(r.Error, "inbox.max_entry_bytes") || len(r.Raw) > inbox.DeadCopyBytes+1024 {
				t.Errorf("oversized dead letter: truncated %v, kept %d bytes, record %d bytes, reason %q", r.Truncated, len(r.Entry), len(r.Raw), r.Error)
			}
			if _, err := r.Replayable(); err == nil {
				t.Errorf("a truncated dead letter offered itself for replay")
			}
		case len(latin1):
			if !strings.Contains(r.Error, "not valid UTF-8") {
				t.Errorf("reason %q", r.Error)
			}
			got, err := r.Replayable()
			if err != nil || got != latin1 {
				t.Errorf("replayable entry %q, %v; want the original bytes %q", got, err, latin1)
			}
		default:
			t.Errorf("unexpected dead letter of %d bytes: %+v", r.Size, r)
		}
	}
	// A replay pushes back the exact bytes (and they are refused again).
	for _, r := range recs {
		if r.Size != len(latin1) {
			continue
		}
		entry, _ := r.Replayable()
		if err := inbox.ReplayDead(ctx, b.r.Client, inboxKey, r.Raw, entry); err != nil {
			t.Fatal(err)
		}
		break
	}
	waitFor(t, "replayed entry dead-lettered again", func() bool {
		return b.listLen(deadKey) == 4 && b.listLen(inboxKey) == 0 && b.listLen(processingKey) == 0
	})
	again, _ := inbox.ListDead(ctx, b.r.Client, inboxKey, 0, 1)
	if got, err := again[0].Replayable(); err != nil || got != latin1 {
		t.Errorf("after a replay: %q, %v; want the original bytes again", got, err)
	}
	t.Logf("oversized (%d bytes, limit %d): record of %d bytes; non-UTF-8 kept exactly through a replay", len(big), cfg.MaxEntryBytes, len(recs[0].Raw))
}
