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
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Changes, m.Transactions, m.Batches, m.IDs, m.Unidentified, m.LagBytes, m.LagSeconds, m.RetainedBytes, m.Holder} {
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
