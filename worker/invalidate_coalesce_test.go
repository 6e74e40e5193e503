package worker_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// Invalidations of single ids, from the Go client and from inbox entries,
// are deleted in batches: every key goes, its fence advanced, the events
// name every key, nothing is left pending, and no job was enqueued.
func TestCoalescedInvalidationDeletesEveryKey(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, func(c *config.Config) { c.Events.MaxKeys = 1000 })
	ctx := context.Background()
	rdb := b.redis.Client
	const n = 300
	for i := range n {
		rdb.HSet(ctx, fmt.Sprintf("user:%d", i), "id", i)
	}
	start := time.Now()
	for i := range n / 2 {
		if err := b.client.Invalidate(ctx, "user", i); err != nil {
			t.Fatal(err)
		}
	}
	pipe := rdb.Pipeline()
	for i := n / 2; i < n; i++ {
		pipe.LPush(ctx, b.cfg.Inbox.Key, fmt.Sprintf(`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [%d]}}`, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	batches := 0
	for len(seen) < n {
		e := b.nextEvent(t, events.TypeInvalidated)
		if e.Cache != "user" || e.KeyCount != len(e.IDs) {
			t.Fatalf("event = %+v", e)
		}
		batches++
		for _, id := range e.IDs {
			seen[id] = true
		}
	}
	took := time.Since(start)
	t.Logf("%d invalidations (half client, half inbox) deleted in %d batches in %s", n, batches, took)
	if batches >= n/2 {
		t.Fatalf("%d batches for %d ids: not coalesced", batches, n)
	}
	for i := range n {
		k := fmt.Sprintf("user:%d", i)
		if rdb.Exists(ctx, k).Val() != 0 {
			t.Fatalf("%s still cached", k)
		}
		if rdb.Exists(ctx, keys.Default().Fence(k)).Val() != 1 {
			t.Fatalf("%s deleted without its fence", k)
		}
	}
	k := keys.Default()
	waitFor(t, 5*time.Second, func() bool { return rdb.ZCard(ctx, k.InvalidatePending("user")).Val() == 0 })
	if q, err := b.inspect.GetQueueInfo("default"); err == nil && q.Processed+q.Pending+q.Active > 0 {
		t.Fatalf("jobs ran or wait: %+v", q)
	}
}

// A lone invalidation is deleted within milliseconds: the worker blocks on
// the cache's wake list rather than polling.
func TestCoalescedInvalidationLoneIsQuick(t *testing.T) {
	t.Parallel()
	b := setupInvalidation(t, nil)
	ctx := context.Background()
	rdb := b.redis.Client
	var lat []time.Duration
	for i := range 20 {
		key := fmt.Sprintf("user:%d", i)
		rdb.HSet(ctx, key, "id", i)
		start := time.Now()
		if err := b.client.Invalidate(ctx, "user", i); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() bool { return rdb.Exists(ctx, key).Val() == 0 })
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("lone invalidation, call to key deleted: median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
	// Polling every coalescing fallback (5s) would take seconds.
	if lat[len(lat)/2] > time.Second {
		t.Fatalf("median %s: the worker does not wake on the token", lat[len(lat)/2])
	}
}
