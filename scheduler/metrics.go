package scheduler

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Tick outcomes, the "outcome" label of cachekeeper_scheduler_ticks_total.
const (
	// OutcomeEnqueued: this replica enqueued the tick.
	OutcomeEnqueued = "enqueued"
	// OutcomeDuplicate: another replica had already enqueued the tick.
	OutcomeDuplicate = "duplicate"
	// OutcomeMissed: the tick passed while this replica was not looking
	// (paused, or the tick was superseded before a failed enqueue succeeded).
	OutcomeMissed = "missed"
	// OutcomeFailed: the enqueue failed (it is retried until the next tick).
	OutcomeFailed = "failed"
)

type metrics struct {
	ticks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Subsystem: "scheduler", Name: "ticks_total",
			Help: "Schedule ticks seen by this replica, by entry and outcome (enqueued, duplicate: another replica enqueued it, missed, failed).",
		}, []string{"entry", "outcome"}),
	}
	if reg != nil {
		if err := reg.Register(m.ticks); err != nil {
			return nil, fmt.Errorf("scheduler: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) tick(entry, outcome string) { m.ticks.WithLabelValues(entry, outcome).Inc() }

// initEntry creates entry's tick series at zero, so that an alert on
// enqueued ticks sees a flat line rather than no series.
func (m *metrics) initEntry(entry string) {
	for _, o := range []string{OutcomeEnqueued, OutcomeDuplicate, OutcomeMissed, OutcomeFailed} {
		m.ticks.WithLabelValues(entry, o)
	}
}
