package scheduler

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Hooks for the external tests (package scheduler_test, external because
// internal/testenv imports config, which imports scheduler).

// FireForTest enqueues e's tick as the Run loop would.
func (s *Scheduler) FireForTest(ctx context.Context, e Entry, tick time.Time) {
	s.fire(ctx, job{entry: e, tick: tick})
}

// TickCountForTest reads the ticks counter of entry and outcome.
func (s *Scheduler) TickCountForTest(entry, outcome string) int {
	return int(testutil.ToFloat64(s.metrics.ticks.WithLabelValues(entry, outcome)))
}

// ReloadSettledForTest reports whether the Run loop has seen every accepted
// Reload.
func (s *Scheduler) ReloadSettledForTest() bool { return s.applied.Load() == s.reloads.Load() }

// LastTickForTest is lastTick.
func LastTickForTest(sched Schedule, after, now time.Time) time.Time {
	return lastTick(sched, after, now)
}
