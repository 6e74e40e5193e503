package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// drainHarness is a coalescer on a private Redis whose enqueue records the
// batches (or fails, or runs a hook first).
type drainHarness struct {
	c       *coalescer
	client  *tasks.Client
	batches [][]string
	fail    error
	hook    func(batch []string)
}

func newDrainHarness(t *testing.T, r *testenv.Redis, maxSize int) *drainHarness {
	t.Helper()
	return newDrainHarnessOn(t, r.Client, maxSize)
}

func newDrainHarnessOn(t *testing.T, rdb redis.UniversalClient, maxSize int) *drainHarness {
	t.Helper()
	h := &drainHarness{client: tasks.NewClientFromRedis(rdb)}
	h.c = &coalescer{
		rdb: rdb, keys: keys.Default(), caches: []string{"user"}, interval: time.Hour, maxSize: maxSize,
		owner:  fmt.Sprintf("owner-%p", h),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		enqueue: func(_ context.Context, a *tasks.WarmArgs) error {
			if h.fail != nil {
				return h.fail
			}
			if h.hook != nil {
				h.hook(a.IDs)
			}
			h.batches = append(h.batches, a.IDs)
			return nil
		},
	}
	return h
}

func (h *drainHarness) pending(t *testing.T) []string {
	t.Helper()
	return h.pendingOf(t, "user")
}

func (h *drainHarness) pendingOf(t *testing.T, cache string) []string {
	t.Helper()
	ids, err := h.c.rdb.ZRange(context.Background(), h.c.keys.WarmPending(cache), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (h *drainHarness) warm(t *testing.T, ids ...any) {
	t.Helper()
	if err := h.client.WarmCache(context.Background(), "user", ids...); err != nil {
		t.Fatal(err)
	}
}

func TestDrainBatchesInRequestOrderAndEmptiesTheSet(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 2)
	h.warm(t, 5, 3)
	h.warm(t, 9)
	h.warm(t, 3) // asked again: moves behind 9, read once
	h.warm(t, 1)
	n, err := h.c.drain(context.Background(), "user")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"5", "9"}, {"3", "1"}}
	if n != 4 || !slices.EqualFunc(h.batches, want, slices.Equal) {
		t.Fatalf("drained %d ids as %v, want %v", n, h.batches, want)
	}
	if p := h.pending(t); len(p) != 0 {
		t.Fatalf("still pending after the drain: %v", p)
	}
	if ex := h.c.rdb.Exists(context.Background(), h.c.keys.WarmDrain("user")).Val(); ex != 0 {
		t.Fatal("the lease outlived a drain that emptied the set")
	}
}

// An id asked for again after the coalescer read it (while its batch is being
// enqueued) must not be acknowledged with that batch: the batch's database
// read may have begun before the request that asked again.
func TestDrainKeepsAnIDAskedForAgainMeanwhile(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	h.warm(t, 1, 2, 3)
	h.hook = func([]string) {
		h.hook = nil
		h.warm(t, 2, 4)
	}
	if _, err := h.c.drain(context.Background(), "user"); err != nil {
		t.Fatal(err)
	}
	if p := h.pending(t); !slices.Equal(p, []string{"2", "4"}) {
		t.Fatalf("pending after the first drain: %v, want [2 4] (asked again or new while the batch was enqueued)", p)
	}
	if _, err := h.c.drain(context.Background(), "user"); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"1", "2", "3"}, {"2", "4"}}
	if !slices.EqualFunc(h.batches, want, slices.Equal) || len(h.pending(t)) != 0 {
		t.Fatalf("batches %v, pending %v; want %v and nothing pending", h.batches, h.pending(t), want)
	}
}

func TestDrainThatCannotEnqueueLosesNothing(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	h.warm(t, 1, 2)
	h.fail = errors.New("redis went away")
	if _, err := h.c.drain(context.Background(), "user"); err == nil {
		t.Fatal("drain reported success although the enqueue failed")
	}
	if p := h.pending(t); !slices.Equal(p, []string{"1", "2"}) {
		t.Fatalf("pending after a failed enqueue: %v, want [1 2]", p)
	}
	h.fail = nil
	if n, err := h.c.drain(context.Background(), "user"); err != nil || n != 2 {
		t.Fatalf("next drain: %d ids, %v", n, err)
	}
}

// Two workers of a fleet: while one holds a cache's lease, the other leaves
// the cache alone; once the first is done, the second drains what came since.
func TestDrainLeaseKeepsReplicasFromEnqueueingTwice(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	a, b := newDrainHarness(t, r, 1), newDrainHarness(t, r, 1)
	a.warm(t, 1, 2)
	a.hook = func([]string) {
		a.hook = nil
		if n, err := b.c.drain(context.Background(), "user"); err != nil || n != 0 {
			t.Errorf("second worker drained %d ids (err %v) while the first held the lease", n, err)
		}
	}
	if n, err := a.c.drain(context.Background(), "user"); err != nil || n != 2 {
		t.Fatalf("first worker: %d ids, %v", n, err)
	}
	a.warm(t, 3)
	if n, err := b.c.drain(context.Background(), "user"); err != nil || n != 1 {
		t.Fatalf("second worker after the first finished: %d ids, %v", n, err)
	}
	if len(b.batches) != 1 || !slices.Equal(b.batches[0], []string{"3"}) {
		t.Fatalf("second worker's batches: %v", b.batches)
	}
}

// A blank member (written by hand, never by WarmCache) is dropped instead of
// making every batch fail validation forever.
func TestDrainDropsBlankIDs(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	h.warm(t, 1)
	if err := h.c.rdb.ZAdd(context.Background(), h.c.keys.WarmPending("user"), redis.Z{Score: 0, Member: " "}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.drain(context.Background(), "user"); err != nil {
		t.Fatal(err)
	}
	if len(h.batches) != 1 || !slices.Equal(h.batches[0], []string{"1"}) || len(h.pending(t)) != 0 {
		t.Fatalf("batches %v, pending %v", h.batches, h.pending(t))
	}
}

// The request counter can vanish (an eviction policy, a careless DEL): a
// request made after that must still not be acknowledged with a batch read
// before it.
func TestDrainKeepsRequestsMadeAfterTheCounterWasLost(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	h.warm(t, 1, 2, 3, 4, 5)
	h.hook = func([]string) {
		h.hook = nil
		if err := h.c.rdb.Del(context.Background(), h.c.keys.WarmSeq("user")).Err(); err != nil {
			t.Error(err)
		}
		h.warm(t, 99)
		h.warm(t, 2)
	}
	if _, err := h.c.drain(context.Background(), "user"); err != nil {
		t.Fatal(err)
	}
	if p := h.pending(t); !slices.Equal(p, []string{"99", "2"}) {
		t.Fatalf("pending after the drain: %v, want [99 2] (asked for after the counter was lost)", p)
	}
}

// Once a batch is enqueued it is acknowledged even if the worker is stopping,
// so that it is not enqueued a second time by the next worker.
func TestDrainAcknowledgesAnEnqueuedBatchWhenStopping(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	h.warm(t, 1, 2)
	ctx, cancel := context.WithCancel(context.Background())
	h.hook = func([]string) { cancel() }
	if n, err := h.c.drain(ctx, "user"); err != nil || n != 2 {
		t.Fatalf("drain: %d ids, %v", n, err)
	}
	if p := h.pending(t); len(p) != 0 {
		t.Fatalf("an enqueued batch stayed pending when the context ended during its enqueue: %v", p)
	}
}

// A worker whose enqueue fails gives its lease up, so that another worker
// can take the ids at once instead of after the lease expires.
func TestDrainReleasesTheLeaseWhenTheEnqueueFails(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	a, b := newDrainHarness(t, r, 100), newDrainHarness(t, r, 100)
	a.warm(t, 1)
	a.fail = errors.New("enqueue refused")
	if _, err := a.c.drain(context.Background(), "user"); err == nil {
		t.Fatal("the failed enqueue was not reported")
	}
	if n, err := b.c.drain(context.Background(), "user"); err != nil || n != 1 {
		t.Fatalf("second worker right after the first failed: %d ids, %v", n, err)
	}
}

// On Redis Cluster every script touches keys of one slot (the cache name is
// their hash tag), whatever slot each cache lands in.
func TestDrainOnRedisCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	h := newDrainHarnessOn(t, cc, 2)
	caches := []string{"user", "order", "product", "session"}
	slots := map[int]bool{}
	for _, cache := range caches {
		slots[keys.Slot(h.c.keys.WarmPending(cache))] = true
		if err := h.client.WarmCache(context.Background(), cache, 1, 2, 3); err != nil {
			t.Fatalf("WarmCache(%s) on a cluster: %v", cache, err)
		}
	}
	if len(slots) < 2 {
		t.Fatalf("the test caches all hash to one slot: %v", slots)
	}
	h.c.caches = caches
	h.c.drainAll(context.Background())
	if len(h.c.failing()) != 0 {
		t.Fatalf("drains failed on a cluster: %v", h.c.failing())
	}
	if len(h.batches) != 2*len(caches) {
		t.Fatalf("%d batches of %v, want 2 per cache", len(h.batches), h.batches)
	}
	for _, cache := range caches {
		if p := h.pendingOf(t, cache); len(p) != 0 {
			t.Errorf("%s still pending on the cluster: %v", cache, p)
		}
	}
}

// One pass stops after maxBatchesPerDrain batches, keeping the lease for the
// next pass; stopping the coalescer releases it for the rest of the fleet.
func TestDrainPassIsBoundedAndStoppingReleasesTheLease(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	a, b := newDrainHarness(t, r, 1), newDrainHarness(t, r, 1)
	for i := 1; i <= maxBatchesPerDrain+1; i++ {
		a.warm(t, i)
	}
	if n, err := a.c.drain(context.Background(), "user"); err != nil || n != maxBatchesPerDrain {
		t.Fatalf("one pass: %d ids, %v; want %d", n, err, maxBatchesPerDrain)
	}
	if n, err := b.c.drain(context.Background(), "user"); err != nil || n != 0 {
		t.Fatalf("another worker drained %d ids (err %v) while the first kept its lease between passes", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.c.run(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := b.c.drain(context.Background(), "user"); err != nil || n != 1 {
		t.Fatalf("after the first worker stopped: %d ids, %v; want the last one", n, err)
	}
}

// A cache that keeps failing is logged when it starts failing and when it
// recovers, not at every pass.
func TestDrainFailuresAreLoggedOnChange(t *testing.T) {
	t.Parallel()
	h := newDrainHarness(t, testenv.NewRedis(t), 100)
	var logs bytes.Buffer
	h.c.logger = slog.New(slog.NewTextHandler(&logs, nil))
	h.warm(t, 1)
	h.fail = errors.New("queue full")
	for range 5 {
		h.c.drainAll(context.Background())
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for 5 failing passes, want 1:\n%s", n, logs.String())
	}
	h.fail = nil
	h.c.drainAll(context.Background())
	if !strings.Contains(logs.String(), "running again") || len(h.pending(t)) != 0 {
		t.Fatalf("recovery not logged or ids left: %v\n%s", h.pending(t), logs.String())
	}
}
