package worker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus collectors.
type Metrics struct {
	processed *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	// Skipped counts cache writes a fence refused (a newer invalidation won).
	Skipped *prometheus.CounterVec
	// Keys counts keys changed by handlers, by kind and action.
	Keys *prometheus.CounterVec
	// RefreshAhead counts keys near expiry that refresh-ahead rewarmed
	// (refreshed) or could not (skipped: a fence refused the write, or the
	// row is gone), by cache.
	RefreshAhead *prometheus.CounterVec
	// EventsFailed counts cache-change events that could not be published.
	EventsFailed *prometheus.CounterVec

	// kinds maps kind to its pre-curried collectors. It is copied on write
	// (a new kind is rare) so that the per-job lookup takes no lock.
	kinds atomic.Pointer[map[string]*kindMetrics]
	mu    sync.Mutex // serialises writers of kinds
}

type kindMetrics struct {
	byOutcome [len(outcomes)]prometheus.Counter // indexed like outcomes
	duration  prometheus.Observer
}

// NewMetrics creates the collectors and registers them with reg (a fresh
// prometheus.NewRegistry() in tests, so several workers can coexist).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "tasks_processed_total",
			Help: "Jobs run, by kind and outcome (success, retry, failed, invalid, cancelled).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cachekeeper", Name: "task_duration_seconds",
			Help:    "Time spent in the handler, by kind.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"kind"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "fenced_writes_skipped_total",
			Help: "Warm writes refused because an invalidation happened after the warm's database read began.",
		}, []string{"cache"}),
		Keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "keys_total",
			Help: "Keys changed by jobs, by kind and action (written, deleted, pruned...).",
		}, []string{"kind", "action"}),
		RefreshAhead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "refresh_ahead_keys_total",
			Help: "Keys being read and near expiry, rewarmed before they expired (refreshed) or not (skipped: fenced or row gone), by cache.",
		}, []string{"cache", "result"}),
		EventsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "events_failed_total",
			Help: "Cache-change events that could not be published (the job's change stands), by kind.",
		}, []string{"kind"}),
	}
	m.kinds.Store(&map[string]*kindMetrics{})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.processed, m.duration, m.Skipped, m.Keys, m.RefreshAhead, m.EventsFailed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var outcomes = [...]string{OutcomeSuccess, OutcomeRetry, OutcomeFailed, OutcomeInvalid, OutcomeCancelled}

func outcomeIndex(outcome string) int {
	for i, o := range outcomes {
		if o == outcome {
			return i
		}
	}
	return -1
}

func (m *Metrics) forKind(kind string) *kindMetrics {
	if km := (*m.kinds.Load())[kind]; km != nil {
		return km
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.kinds.Load()
	if km := old[kind]; km != nil {
		return km
	}
	km := &kindMetrics{duration: m.duration.WithLabelValues(kind)}
	for i, o := range outcomes {
		km.byOutcome[i] = m.processed.WithLabelValues(kind, o)
	}
	next := make(map[string]*kindMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[kind] = km
	m.kinds.Store(&next)
	return km
}

func (m *Metrics) observe(kind, outcome string, d time.Duration) {
	km := m.forKind(kind)
	if i := outcomeIndex(outcome); i >= 0 {
		km.byOutcome[i].Inc()
	} else {
		m.processed.WithLabelValues(kind, outcome).Inc()
	}
	km.duration.Observe(d.Seconds())
}
