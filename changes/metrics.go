package changes

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the change stream's Prometheus collectors.
type Metrics struct {
	// Changes counts row changes of watched tables, by table and op.
	Changes *prometheus.CounterVec
	// Transactions counts committed transactions whose jobs were enqueued.
	Transactions prometheus.Counter
	// Batches counts jobs enqueued, by kind.
	Batches *prometheus.CounterVec
	// IDs counts ids sent in cache:invalidate jobs, by cache.
	IDs *prometheus.CounterVec
	// Unidentified counts changes whose id column the stream did not carry
	// (a DELETE without REPLICA IDENTITY covering the column).
	Unidentified *prometheus.CounterVec
	// LagBytes is how far (bytes of WAL or binlog) the confirmed position is
	// behind the server's current one.
	LagBytes prometheus.Gauge
	// LagSeconds is how long ago the last applied transaction committed,
	// 0 when caught up.
	LagSeconds prometheus.Gauge
	// RetainedBytes is the WAL the slot holds on the primary (PostgreSQL).
	RetainedBytes prometheus.Gauge
	// Holder is 1 while this replica holds the stream.
	Holder prometheus.Gauge
	// VisibilityWait is the delivered-but-invisible window: how long the
	// stream waited, per transaction with watched changes, until the commit
	// was visible to new snapshots.
	VisibilityWait prometheus.Histogram
	// VisibilityTimeouts counts transactions not visible within the
	// visibility timeout (invalidated then, and repeated later).
	VisibilityTimeouts prometheus.Counter
	// VisibilityUnproven counts transactions whose visibility could not be
	// checked (invalidated, and repeated later).
	VisibilityUnproven prometheus.Counter
	// VisibilityRepeats counts delayed repeat jobs of late transactions.
	VisibilityRepeats prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "rows_total",
			Help: "Row changes of watched tables read from the database's change stream, by table and op."}, []string{"table", "op"}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "transactions_total",
			Help: "Committed transactions whose invalidation jobs were all enqueued (and position confirmed)."}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "batches_enqueued_total",
			Help: "Invalidation jobs enqueued from the change stream, by kind."}, []string{"kind"}),
		IDs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "ids_total",
			Help: "Ids sent in cache:invalidate jobs from the change stream, by cache."}, []string{"cache"}),
		Unidentified: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "unidentified_total",
			Help: "Changes whose id column the stream did not carry (set REPLICA IDENTITY FULL), by table."}, []string{"table"}),
		LagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "lag_bytes",
			Help: "Bytes of WAL/binlog between the server's current position and the confirmed one."}),
		LagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "lag_seconds",
			Help: "Seconds since the last applied transaction committed (0 when caught up)."}),
		RetainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "retained_wal_bytes",
			Help: "WAL the replication slot keeps on the PostgreSQL primary."}),
		Holder: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "holder",
			Help: "1 while this replica holds the change stream, 0 while it waits."}),
		VisibilityWait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "visibility_wait_seconds",
			Help:    "Per transaction with watched changes: how long after delivery the commit became visible to other sessions (the stream enqueues its invalidations only then).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		VisibilityTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "visibility_timeouts_total",
			Help: "Transactions still invisible to other sessions after the visibility timeout: invalidated then and repeated later."}),
		VisibilityUnproven: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "visibility_unproven_total",
			Help: "Transactions whose visibility could not be checked (e.g. no privilege for the locking read): invalidated and repeated later."}),
		VisibilityRepeats: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cachekeeper", Subsystem: "changes", Name: "visibility_repeats_total",
			Help: "Delayed repeat invalidation jobs enqueued for transactions not proven visible in time."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Changes, m.Transactions, m.Batches, m.IDs, m.Unidentified, m.LagBytes, m.LagSeconds, m.RetainedBytes, m.Holder,
		m.VisibilityWait, m.VisibilityTimeouts, m.VisibilityUnproven, m.VisibilityRepeats} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("change stream metrics are already registered on this registry")
			}
			return nil, err
		}
	}
	return m, nil
}
