package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestOrphanWatchReportsPendingWarmsNoWorkerServes(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	client := tasks.NewClientFromRedis(r.Client)
	warm := func(cache string, ids ...any) {
		t.Helper()
		if err := client.WarmCache(ctx, cache, ids...); err != nil {
			t.Fatal(err)
		}
	}
	warm("usr", 1, 2) // misspelt: nobody serves it
	warm("user", 1)   // served by this worker
	warm("order", 1)  // served by another worker of the fleet
	warm("gone", 1)   // used once, nothing pending any more
	if err := r.Client.ZRem(ctx, keys.Default().WarmPending("gone"), "1").Err(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	o := newOrphanWatch(r.Client, keys.Default(), []string{"user"}, slog.New(slog.NewTextHandler(&logs, nil)))
	other := newOrphanWatch(r.Client, keys.Default(), []string{"order"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	other.check(ctx, now)
	o.check(ctx, now)
	if logs.Len() != 0 {
		t.Fatalf("reported at start, before the fleet's workers had a chance to mark their caches: %s", logs.String())
	}
	if ttl := r.Client.TTL(ctx, keys.Default().WarmServed("user")).Val(); ttl <= 0 || ttl > servedTTL {
		t.Fatalf("served marker TTL %s, want (0, %s]", ttl, servedTTL)
	}
	// The application keeps asking for the misspelt cache's ids: their
	// scores change at every request, and they must be reported anyway.
	warm("usr", 2, 1)
	o.check(ctx, now.Add(time.Second))
	if logs.Len() != 0 {
		t.Fatalf("checked again before orphanCheckEvery: %s", logs.String())
	}
	o.check(ctx, now.Add(orphanCheckEvery))
	out := logs.String()
	if !strings.Contains(out, "cache=usr") || !strings.Contains(out, "pending_ids=2") {
		t.Fatalf("the misspelt cache was not reported: %q", out)
	}
	if strings.Contains(out, "cache=user") || strings.Contains(out, "cache=order") {
		t.Fatalf("a cache this or another worker serves was reported: %q", out)
	}
	names := r.Client.SMembers(ctx, keys.Default().WarmCaches()).Val()
	for _, n := range names {
		if n == "gone" {
			t.Fatalf("registry %v still lists a name with nothing pending and no worker", names)
		}
	}
	if len(names) != 3 {
		t.Fatalf("registry %v, want usr, user and order", names)
	}
}
