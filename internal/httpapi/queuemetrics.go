package httpapi

import (
	"context"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// QueueSource is what the queue gauges read on each scrape.
type QueueSource struct {
	Inspector *asynq.Inspector
	Redis     redis.UniversalClient
	Keys      keys.Keys
	// Queues are the configured queues, reported (at zero) before asynq
	// knows them.
	Queues []string
	// Caches are the configured cache names (coalesce_pending per cache).
	Caches []string
	// InboxKey is the inbox list ("" when the inbox is disabled).
	InboxKey string
}

var (
	descQueueSize = prometheus.NewDesc("cachekeeper_queue_size",
		"Tasks in each queue by state (pending, active, scheduled, retry, archived, completed, aggregating).",
		[]string{"queue", "state"}, nil)
	descQueueLatency = prometheus.NewDesc("cachekeeper_queue_latency_seconds",
		"Age of the oldest pending task of each queue (0 when none is pending).", []string{"queue"}, nil)
	descQueuePaused = prometheus.NewDesc("cachekeeper_queue_paused",
		"1 when the queue is paused ('cachekeeper queues pause'), else 0.", []string{"queue"}, nil)
	descCoalescePending = prometheus.NewDesc("cachekeeper_coalesce_pending",
		"Ids WarmCache left for each cache that no worker has turned into a job yet.", []string{"cache"}, nil)
	descInboxDead = prometheus.NewDesc("cachekeeper_inbox_dead_letters",
		"Entries in the inbox's dead-letter list ('cachekeeper inbox dead').", nil, nil)
	descScrapeErrors = prometheus.NewDesc("cachekeeper_queue_scrape_errors",
		"1 when the last scrape of the queue state failed (Redis unreachable), else 0.", nil, nil)
)

// queueCollector reads queue state from Redis at scrape time, so the gauges
// are exactly what asynq holds, on every worker replica alike.
type queueCollector struct {
	src     QueueSource
	timeout time.Duration
}

// NewQueueCollector returns the collector of the queue, coalescing and inbox
// gauges.
func NewQueueCollector(src QueueSource) prometheus.Collector {
	return &queueCollector{src: src, timeout: 3 * time.Second}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueSize, descQueueLatency, descQueuePaused, descCoalescePending, descInboxDead, descScrapeErrors} {
		ch <- d
	}
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	failed := 0.0
	if err := q.collect(ch); err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.GaugeValue, failed)
}

func (q *queueCollector) collect(ch chan<- prometheus.Metric) error {
	names, err := q.src.Inspector.Queues()
	if err != nil {
		return err
	}
	known := len(names)
	for _, c := range q.src.Queues {
		if !slices.Contains(names, c) {
			names = append(names, c)
		}
	}
	for i, name := range names {
		info := &asynq.QueueInfo{Queue: name} // configured, no task yet
		if i < known {
			if info, err = q.src.Inspector.GetQueueInfo(name); err != nil {
				return err
			}
		}
		for state, n := range map[string]int{"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed, "aggregating": info.Aggregating} {
			ch <- prometheus.MustNewConstMetric(descQueueSize, prometheus.GaugeValue, float64(n), name, state)
		}
		ch <- prometheus.MustNewConstMetric(descQueueLatency, prometheus.GaugeValue, info.Latency.Seconds(), name)
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(descQueuePaused, prometheus.GaugeValue, paused, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	for _, c := range q.src.Caches {
		n, err := q.src.Redis.ZCard(ctx, q.src.Keys.WarmPending(c)).Result()
		if err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(descCoalescePending, prometheus.GaugeValue, float64(n), c)
	}
	if q.src.InboxKey != "" {
		n, err := q.src.Redis.LLen(ctx, keys.DeadLetter(q.src.InboxKey)).Result()
		if err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(descInboxDead, prometheus.GaugeValue, float64(n))
	}
	return nil
}

// NewBuildInfo returns cachekeeper_build_info{version,go,asynq} = 1.
func NewBuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cachekeeper_build_info", Help: "Always 1; the labels say which cachekeeper, Go and asynq run.",
		ConstLabels: prometheus.Labels{"version": version, "go": runtime.Version(), "asynq": AsynqVersion()},
	})
	g.Set(1)
	return g
}

// AsynqVersion is the asynq module version built in ("unknown" in tests).
func AsynqVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hibiken/asynq" {
				return d.Version
			}
		}
	}
	return "unknown"
}
