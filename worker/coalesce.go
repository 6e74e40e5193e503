package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/coalesce"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Coalescing of warms (internal/coalesce): tasks.Client.WarmCache adds ids
// to the cache's pending set, one Redis call per request and no job. The
// coalescer, a part of every worker that warms caches, takes the pending
// ids every warm.coalesce_interval, oldest request first, and enqueues them
// as cache:warm jobs of up to warm.coalesce_max_size ids on
// warm.coalesce_queue; ids leave the set only once their job is enqueued.

// coalesceLease is how long a worker keeps the right to drain a cache
// without taking a batch. It must exceed the time one enqueue can take.
const coalesceLease = 30 * time.Second

// maxBatchesPerDrain bounds one pass over one cache, so that a cache whose
// producers outpace the worker does not starve the others: the rest waits
// for the next pass.
const maxBatchesPerDrain = coalesce.DefaultMaxBatches

// firstPassTimeout bounds the pass the worker runs before its servers start,
// so that an unreachable Redis delays the start by no more than this.
const firstPassTimeout = 5 * time.Second

// coalescer turns the pending ids of the worker's caches into cache:warm jobs.
type coalescer struct {
	rdb      redis.UniversalClient
	keys     keys.Keys
	caches   []string
	interval time.Duration
	maxSize  int
	owner    string
	enqueue  func(ctx context.Context, a *tasks.WarmArgs) error
	logger   *slog.Logger

	// orphans watches the pending ids of caches no worker configures.
	orphans *orphanWatch

	once    sync.Once
	drainer *coalesce.Drainer
	initErr error
}

// registerCoalescer adds the coalescer as a part of the worker; called once
// the warming family is registered.
func (w *Worker) registerCoalescer() error {
	client := tasks.NewClientFromRedis(w.deps.Redis)
	queue := tasks.Queue(w.cfg.Warm.CoalesceQueue)
	c := &coalescer{
		rdb:      w.deps.Redis,
		keys:     w.keys,
		caches:   w.warm.names,
		interval: w.cfg.Warm.CoalesceInterval,
		maxSize:  w.cfg.Warm.CoalesceMaxSize,
		enqueue: func(ctx context.Context, a *tasks.WarmArgs) error {
			_, err := client.Enqueue(ctx, a, queue)
			return err
		},
		logger:  w.logger,
		orphans: newOrphanWatch(w.deps.Redis, w.keys, w.warm.names, w.logger),
	}
	if _, err := c.d(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.coalesce = c
	w.addRunner("warm coalescer", c.run)
	return nil
}

// d returns the drainer, built from c's fields on first use.
func (c *coalescer) d() (*coalesce.Drainer, error) {
	c.once.Do(func() {
		c.drainer = &coalesce.Drainer{
			Redis: c.rdb,
			Set:   func(cache string) coalesce.Set { return coalesce.WarmSet(c.keys, cache) },
			Run: func(ctx context.Context, cache string, ids []string) error {
				if err := c.enqueue(ctx, &tasks.WarmArgs{Cache: cache, IDs: ids}); err != nil {
					return err
				}
				c.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms enqueued", slog.String("cache", cache), slog.Int("ids", len(ids)))
				return nil
			},
			What:    "warms",
			Lease:   coalesceLease,
			MaxSize: c.maxSize,
			Logger:  c.logger,
			Owner:   c.owner,
		}
		c.initErr = c.drainer.Init()
	})
	return c.drainer, c.initErr
}

// firstPass drains every cache once, within firstPassTimeout. The worker
// runs it before its servers start, so that ids left pending while no worker
// ran are jobs by the servers' first poll (which would otherwise find
// nothing and sleep about a second).
func (c *coalescer) firstPass(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, firstPassTimeout)
	defer cancel()
	c.drainAll(ctx)
}

// run drains every cache every interval until ctx ends, then releases the
// leases it holds.
func (c *coalescer) run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.releaseAll(ctx)
			return nil
		case <-t.C:
			c.drainAll(ctx)
			c.orphans.check(ctx, time.Now())
		}
	}
}

// drainAll drains each cache once (coalesce.Drainer.DrainAll).
func (c *coalescer) drainAll(ctx context.Context) {
	if d, err := c.d(); err == nil {
		d.DrainAll(ctx, c.caches)
	}
}

// drain enqueues the pending ids of cache, a batch at a time, until none is
// left, another worker holds the lease, or maxBatchesPerDrain batches went.
// It returns how many ids it enqueued.
func (c *coalescer) drain(ctx context.Context, cache string) (int, error) {
	d, err := c.d()
	if err != nil {
		return 0, err
	}
	n, _, err := d.Drain(ctx, cache)
	if errors.Is(err, coalesce.ErrLeased) {
		err = nil
	}
	return n, err
}

// failing returns the caches whose last pass failed.
func (c *coalescer) failing() []string {
	d, err := c.d()
	if err != nil {
		return nil
	}
	return d.Failing()
}

func (c *coalescer) releaseAll(ctx context.Context) {
	if d, err := c.d(); err == nil {
		d.ReleaseAll(ctx, c.caches)
	}
}
