package worker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestOrphanWatchReportsPendingWarmsNobodyTakes(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	client := tasks.NewClientFromRedis(r.Client)
	for _, cache := range []string{"usr", "user", "order"} {
		if err := client.WarmCache(ctx, cache, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	o := newOrphanWatch(r.Client, keys.Default(), []string{"user"}, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Now()
	o.check(ctx, now)
	if logs.Len() != 0 {
		t.Fatalf("reported at the first sight, before anyone had a chance to take the ids: %s", logs.String())
	}
	// Another worker of the fleet takes "order" meanwhile; nobody takes "usr".
	if err := r.Client.ZRem(ctx, keys.Default().WarmPending("order"), "1").Err(); err != nil {
		t.Fatal(err)
	}
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
		t.Fatalf("a configured cache, or one another worker drains, was reported: %q", out)
	}
}
