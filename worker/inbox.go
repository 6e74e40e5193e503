package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// registerInbox adds the inbox bridge (internal/inbox) as a part of the
// worker unless inbox.disabled is set: it moves the JSON jobs that
// producers in any language LPUSH onto the inbox list into asynq.
func (w *Worker) registerInbox() error {
	if w.cfg.Inbox.Disabled {
		return nil
	}
	// The bridge's own client: its WarmCache must use this worker's prefix,
	// and it refuses (dead-letters) entries naming this worker's internal
	// keys, or queues and caches it does not serve.
	opts := w.cfg.ClientOptions()
	if w.deps.TracerProvider != nil {
		// An entry's producer span (under its traceparent) is recorded too.
		opts = append(opts, tasks.WithTracerProvider(w.deps.TracerProvider))
	}
	client := tasks.NewClientFromRedis(w.deps.Redis, opts...)
	queues := make([]string, 0, len(w.cfg.Worker.Queues))
	for q := range w.cfg.Worker.Queues {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	entries, err := inboxCounter(w.deps.Registry)
	if err != nil {
		return err
	}
	// The batched enqueue builds each job with a client of the same options
	// and sends a batch's jobs in one pipeline.
	batch, err := inbox.NewBatchEnqueuer(w.deps.Redis, opts...)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	b, err := inbox.New(inbox.Config{
		Redis: w.deps.Redis,
		// BLMOVE waits on a connection of its own, closed on stop, so that
		// stopping the worker does not wait for the block timeout.
		NewBlocking: func() (redis.UniversalClient, error) {
			c, ok := w.connOpt.MakeRedisClient().(redis.UniversalClient)
			if !ok {
				return nil, fmt.Errorf("unsupported Redis connection option %T", w.connOpt)
			}
			return c, nil
		},
		Enqueuer:      client,
		Batch:         batch,
		Key:           w.cfg.Inbox.Key,
		BlockTimeout:  w.cfg.Inbox.BlockTimeout,
		RecoverAfter:  w.cfg.Inbox.RecoverAfter,
		DeadMax:       w.cfg.Inbox.DeadMax,
		MaxEntryBytes: w.cfg.Inbox.MaxEntryBytes,
		BatchSize:     w.cfg.Inbox.BatchSize,
		Enqueuers:     w.cfg.Inbox.Enqueuers,
		Queues:        queues,
		// Kinds of the application's own that a running worker handles.
		Kinds:     catalog.NewResolver(w.deps.Redis, w.keys),
		Logger:    w.logger,
		OnOutcome: func(outcome string) { entries.WithLabelValues(outcome).Inc() },
	})
	if err != nil {
		_ = batch.Close()
		return fmt.Errorf("worker: %w", err)
	}
	w.addRunner("inbox bridge", func(ctx context.Context) error {
		defer batch.Close()
		return b.Run(ctx)
	})
	return nil
}

// inboxCounter counts inbox entries by outcome (enqueued, coalesced,
// duplicate, dead_lettered, recovered), registered with reg when it is not nil.
func inboxCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "cachekeeper", Name: "inbox_entries_total",
		Help: "Inbox entries handled by the bridge, by outcome (enqueued, coalesced, duplicate, dead_lettered, recovered).",
	}, []string{"outcome"})
	for _, o := range []string{inbox.OutcomeEnqueued, inbox.OutcomeCoalesced, inbox.OutcomeDuplicate, inbox.OutcomeDeadLettered, inbox.OutcomeRecovered} {
		c.WithLabelValues(o) // every series from zero
	}
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("worker metrics: %w", err)
	}
	return c, nil
}
