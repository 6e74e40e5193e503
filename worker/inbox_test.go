package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
)

func TestInboxJobRunsAndBadEntryIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	rdb.HSet(ctx, "user:3", "id", "3", "email", "old@example.com")
	inbox := b.cfg.Inbox.Key
	// What a Python producer does: r.lpush("cachekeeper:inbox", json.dumps(job)).
	if err := rdb.LPush(ctx, inbox, `{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [3]}}`, `{"kind": "cache:invalidate", "args": {"cache": "user"}}`).Err(); err != nil {
		t.Fatal(err)
	}
	// A single-id invalidation of a cache is coalesced: no job, so the
	// event names no task.
	e := b.nextEvent(t, events.TypeInvalidated)
	if e.Cache != "user" || len(e.IDs) != 1 || e.IDs[0] != "3" || e.TaskID != "" {
		t.Fatalf("event = %+v", e)
	}
	if rdb.Exists(ctx, "user:3").Val() != 0 {
		t.Fatal("user:3 still cached")
	}
	dead := keys.DeadLetter(inbox)
	waitFor(t, 5*time.Second, func() bool { return rdb.LLen(ctx, dead).Val() == 1 })
	var rec struct{ Entry, Error string }
	if err := json.Unmarshal([]byte(rdb.LIndex(ctx, dead, 0).Val()), &rec); err != nil || !strings.Contains(rec.Error, `"ids"`) {
		t.Fatalf("dead letter = %+v (%v), want the reason naming ids", rec, err)
	}
	// The batch leaves the processing list once every entry of it is
	// handled, by the bridge's remover: shortly after the job ran.
	left := func() int64 { return rdb.LLen(ctx, inbox).Val() + rdb.LLen(ctx, keys.Processing(inbox)).Val() }
	waitFor(t, 5*time.Second, func() bool { return left() == 0 })
}

func TestInboxDisabled(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, func(c *config.Config) { c.Inbox.Disabled = true })
	ctx := context.Background()
	rdb := b.redis.Client
	rdb.LPush(ctx, b.cfg.Inbox.Key, `{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [3]}}`)
	// Prove the worker is up and running jobs, then that the entry stayed.
	if _, err := b.client.InvalidateKeys(ctx, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	b.nextEvent(t, events.TypeInvalidated)
	if n := rdb.LLen(ctx, b.cfg.Inbox.Key).Val(); n != 1 {
		t.Fatalf("inbox has %d entries, want the pushed one untouched", n)
	}
}
