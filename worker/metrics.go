package worker

import (
	"sync"
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

	mu    sync.RWMutex
	kinds map[string]*kindMetrics
}

type kindMetrics struct {
	byOutcome map[string]prometheus.Counter
	duration  prometheus.Observer
}

// NewMetrics creates the collectors and registers them with reg (a fresh
// prometheus.NewRegistry() in tests, so several workers can coexist).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cachekeeper", Name: "tasks_processed_total",
			Help: "Jobs run, by kind and outcome (success, retry, failed, invalid).",
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
		kinds: map[string]*kindMetrics{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.processed, m.duration, m.Skipped, m.Keys} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var outcomes = []string{OutcomeSuccess, OutcomeRetry, OutcomeFailed, OutcomeInvalid}

func (m *Metrics) forKind(kind string) *kindMetrics {
	m.mu.RLock()
	km := m.kinds[kind]
	m.mu.RUnlock()
	if km != nil {
		return km
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if km = m.kinds[kind]; km != nil {
		return km
	}
	km = &kindMetrics{byOutcome: map[string]prometheus.Counter{}, duration: m.duration.WithLabelValues(kind)}
	for _, o := range outcomes {
		km.byOutcome[o] = m.processed.WithLabelValues(kind, o)
	}
	m.kinds[kind] = km
	return km
}

func (m *Metrics) observe(kind, outcome string, d time.Duration) {
	km := m.forKind(kind)
	km.byOutcome[outcome].Inc()
	km.duration.Observe(d.Seconds())
}
