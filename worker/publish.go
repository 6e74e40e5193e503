package worker

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cachekeeper/cachekeeper/events"
)

// eventSender publishes cache-change events the same way for every kind:
// an event that cannot be sent (no channel permission, Redis refusing
// writes) never fails or retries the job, whose cache change is done and
// idempotent but not worth redoing for a notification. Each failure is
// counted (cachekeeper_events_failed_total{kind}), and logged once when
// publishing starts failing and once when it works again, not per job.
type eventSender struct {
	pub    *events.Publisher // nil: events are disabled
	logger *slog.Logger
	failed *prometheus.CounterVec

	mu      sync.Mutex
	failing bool
	missed  int64
}

func (s *eventSender) publish(ctx context.Context, kind string, ev events.Event) {
	if s == nil || s.pub == nil {
		return
	}
	err := s.pub.Publish(ctx, ev)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.failed.WithLabelValues(kind).Inc()
		s.missed++
		if !s.failing {
			s.failing = true
			s.logger.LogAttrs(ctx, slog.LevelWarn, "cache events cannot be published; jobs go on without them (counted in cachekeeper_events_failed_total)",
				slog.String("kind", kind), slog.String("error", err.Error()))
		}
	case s.failing:
		s.failing = false
		s.logger.LogAttrs(ctx, slog.LevelInfo, "cache events published again", slog.Int64("missed", s.missed))
		s.missed = 0
	}
}
