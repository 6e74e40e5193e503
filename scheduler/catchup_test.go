package scheduler_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/cachekeeper/cachekeeper/scheduler" // external test: testenv imports config, which imports scheduler

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// Ticks missed while every replica was down are skipped, except that an
// entry with catch_up: one gets the latest of them, once, however many
// replicas start.
func TestCatchUpOne(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	one := notifyEntry("one", "@every 10s")
	one.CatchUp = CatchUpOne
	none := notifyEntry("none", "@every 10s")
	entries := []EntryConfig{one, none}

	// First start: nothing recorded, so nothing to catch up.
	first := startReplica(t, r, clock, entries)
	waitIdle(t, clock, 1)
	if got := taskIDs(t, r, "default"); len(got) != 0 {
		t.Fatalf("first start enqueued %v, want nothing", got)
	}
	clock.Advance(10 * time.Second) // tick t0+10 for both
	waitIdle(t, clock, 1)
	first.stop(t)

	// Everyone is down for t0+20, t0+30 and t0+40.
	clock.Set(t0.Add(45 * time.Second))
	second := startReplica(t, r, clock, entries)
	third := startReplica(t, r, clock, entries)
	waitIdle(t, clock, 2)
	clock.Advance(5 * time.Second) // tick t0+50
	waitIdle(t, clock, 2)

	e1, e2 := second.s.Entries()[0], second.s.Entries()[1]
	want := sortedCopy(append(
		tickIDs(e1.Series, t0.Add(10*time.Second), t0.Add(40*time.Second), t0.Add(50*time.Second)),
		tickIDs(e2.Series, t0.Add(10*time.Second), t0.Add(50*time.Second))...))
	if got := taskIDs(t, r, "default"); !equalStrings(got, want) {
		t.Fatalf("tasks:\n got %v\nwant %v", got, want)
	}
	if n := second.count("one", OutcomeEnqueued) + third.count("one", OutcomeEnqueued); n != 2 {
		t.Fatalf("catch-up replicas enqueued %d ticks of 'one', want 2 (t0+40 once, t0+50)", n)
	}
}

// An enqueue that fails (Redis refusing writes) is retried until it works,
// before the next tick; a newer tick supersedes it.
func TestFailedEnqueueIsRetried(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	ctx := t.Context()
	rep := startReplica(t, r, clock, []EntryConfig{notifyEntry("retry", "@every 10s")},
		func(c *Config) { c.EnqueueTimeout = 200 * time.Millisecond })
	waitIdle(t, clock, 1)

	if err := r.Client.Do(ctx, "CLIENT", "PAUSE", "30000", "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	clock.Advance(10 * time.Second) // tick t0+10 fails
	waitIdle(t, clock, 1)
	if n := rep.count("retry", OutcomeFailed); n != 1 {
		t.Fatalf("failed = %d, want 1", n)
	}
	if err := r.Client.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	clock.Advance(time.Second) // retry after 1s backoff
	waitIdle(t, clock, 1)
	e := rep.s.Entries()[0]
	if got := taskIDs(t, r, "default"); !equalStrings(got, tickIDs(e.Series, t0.Add(10*time.Second))) {
		t.Fatalf("after retry tasks = %v, want tick t0+10", got)
	}

	// Fail again at t0+20; this time the next tick comes before Redis does.
	if err := r.Client.Do(ctx, "CLIENT", "PAUSE", "30000", "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	clock.Advance(9 * time.Second)
	waitIdle(t, clock, 1)
	if err := r.Client.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	clock.Set(t0.Add(30 * time.Second))
	waitIdle(t, clock, 1)
	if got := taskIDs(t, r, "default"); !equalStrings(got, tickIDs(e.Series, t0.Add(10*time.Second), t0.Add(30*time.Second))) {
		t.Fatalf("tasks = %v, want t0+10 and t0+30 (t0+20 superseded)", got)
	}
	if n := rep.count("retry", OutcomeMissed); n < 1 || !strings.Contains(e.TaskID(t0), e.Series) {
		t.Fatalf("missed = %d, want the superseded tick counted", n)
	}
}
