package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Coalescing of warms: tasks.Client.WarmCache adds ids to the cache's
// pending set (keys.WarmPending, each id scored by a request sequence
// number), one Redis call per request and no job. The coalescer, a part of
// every worker that warms caches, takes the pending ids every
// warm.coalesce_interval, oldest request first, and enqueues them as
// cache:warm jobs of up to warm.coalesce_max_size ids on warm.coalesce_queue.
//
// Nothing is lost and no request is dropped before a read that follows it:
//   - ids leave the set only after the job holding them is enqueued; a crash
//     or a failed enqueue in between leaves them pending for the next pass
//     (at worst they are warmed twice, which is harmless);
//   - the acknowledgement removes an id only if its score is still the one
//     the coalescer read: an id asked for again meanwhile has a new score (the
//     request counter only grows, and is raised above the pending scores if
//     it was lost), so it stays for a later job, whose database read begins
//     after that request.
//
// A lease (keys.WarmDrain, renewed by every batch, released when the set is
// drained, on a failure and on shutdown) lets one worker of a fleet drain a
// cache at a time, so that replicas do not enqueue the same ids twice.

// coalesceLease is how long a worker keeps the right to drain a cache
// without taking a batch. It must exceed the time one enqueue can take.
const coalesceLease = 30 * time.Second

// maxBatchesPerDrain bounds one pass over one cache, so that a cache whose
// producers outpace the worker does not starve the others: the rest waits
// for the next pass.
const maxBatchesPerDrain = 100

// firstPassTimeout bounds the pass the worker runs before its servers start,
// so that an unreachable Redis delays the start by no more than this.
const firstPassTimeout = 5 * time.Second

// cleanupTimeout bounds an acknowledgement or a lease release made after the
// worker's context ended.
const cleanupTimeout = 5 * time.Second

// failureLogEvery is how often a cache that keeps failing is logged again.
const failureLogEvery = time.Minute

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

	// failing holds, per failing cache, when its failure was last logged.
	failing map[string]time.Time
	// orphans watches the pending ids of caches no worker configures.
	orphans *orphanWatch
}

// registerCoalescer adds the coalescer as a part of the worker; called once
// the warming family is registered.
func (w *Worker) registerCoalescer() error {
	owner := make([]byte, 8)
	if _, err := rand.Read(owner); err != nil {
		return fmt.Errorf("worker: coalescer lease owner: %w", err)
	}
	client := tasks.NewClientFromRedis(w.deps.Redis)
	queue := tasks.Queue(w.cfg.Warm.CoalesceQueue)
	c := &coalescer{
		rdb:      w.deps.Redis,
		keys:     w.keys,
		caches:   w.warm.names,
		interval: w.cfg.Warm.CoalesceInterval,
		maxSize:  w.cfg.Warm.CoalesceMaxSize,
		owner:    hex.EncodeToString(owner),
		enqueue: func(ctx context.Context, a *tasks.WarmArgs) error {
			_, err := client.Enqueue(ctx, a, queue)
			return err
		},
		logger:  w.logger,
		failing: map[string]time.Time{},
		orphans: newOrphanWatch(w.deps.Redis, w.keys, w.warm.names, w.logger),
	}
	w.coalesce = c
	w.addRunner("warm coalescer", c.run)
	return nil
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

// drainAll drains each cache once. A failure leaves the ids pending for the
// next pass; it is logged when a cache starts failing (then at most once per
// failureLogEvery) and when it recovers.
func (c *coalescer) drainAll(ctx context.Context) {
	for _, cache := range c.caches {
		_, err := c.drain(ctx, cache)
		if ctx.Err() != nil {
			return
		}
		last, wasFailing := c.failing[cache]
		switch {
		case err == nil && wasFailing:
			delete(c.failing, cache)
			c.logger.LogAttrs(ctx, slog.LevelInfo, "coalesced warms: enqueueing again", slog.String("cache", cache))
		case err != nil && (!wasFailing || time.Since(last) >= failureLogEvery):
			c.failing[cache] = time.Now()
			c.logger.LogAttrs(ctx, slog.LevelWarn, "coalesced warms: cannot enqueue; the ids stay pending and are tried every interval",
				slog.String("cache", cache), slog.Duration("interval", c.interval), slog.String("error", err.Error()))
		}
	}
}

// drain enqueues the pending ids of cache, a batch at a time, until none is
// left, another worker holds the lease, or maxBatchesPerDrain batches went.
// It returns how many ids it enqueued.
func (c *coalescer) drain(ctx context.Context, cache string) (int, error) {
	k := []string{c.keys.WarmPending(cache), c.keys.WarmDrain(cache)}
	total := 0
	for range maxBatchesPerDrain {
		vals, err := redisx.WarmDrainTake.Run(ctx, c.rdb, k, c.owner, coalesceLease.Milliseconds(), c.maxSize).StringSlice()
		if errors.Is(err, redis.Nil) {
			return total, nil // another worker drains this cache
		}
		if err != nil {
			return total, fmt.Errorf("take pending ids: %w", err)
		}
		if len(vals) < 2 {
			return total, nil
		}
		ids := make(tasks.IDs, 0, len(vals)/2)
		for i := 0; i+1 < len(vals); i += 2 {
			if strings.TrimSpace(vals[i]) != "" { // WarmCache never adds one; another writer might
				ids = append(ids, vals[i])
			}
		}
		if len(ids) > 0 {
			if err := c.enqueue(ctx, &tasks.WarmArgs{Cache: cache, IDs: ids}); err != nil {
				c.release(ctx, cache) // another worker may have better luck
				return total, fmt.Errorf("enqueue %d coalesced ids: %w", len(ids), err)
			}
		}
		// The job is enqueued: acknowledge it even if ctx ended meanwhile, or
		// its ids would be enqueued again.
		done := len(vals)/2 < c.maxSize
		release := "0"
		if done {
			release = "1"
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		args := make([]any, 0, 2+len(vals))
		args = append(args, c.owner, release)
		for _, v := range vals {
			args = append(args, v)
		}
		err = redisx.WarmDrainAck.Run(actx, c.rdb, k, args...).Err()
		cancel()
		if err != nil {
			return total, fmt.Errorf("acknowledge %d enqueued ids: %w", len(ids), err)
		}
		total += len(ids)
		c.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms enqueued", slog.String("cache", cache), slog.Int("ids", len(ids)))
		if done || ctx.Err() != nil {
			return total, nil
		}
	}
	return total, nil
}

// release gives up this worker's lease on cache, if it holds it.
func (c *coalescer) release(ctx context.Context, cache string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := redisx.WarmDrainRelease.Run(rctx, c.rdb, []string{c.keys.WarmDrain(cache)}, c.owner).Err(); err != nil {
		c.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms: release the lease", slog.String("cache", cache), slog.String("error", err.Error()))
	}
}

func (c *coalescer) releaseAll(ctx context.Context) {
	for _, cache := range c.caches {
		c.release(ctx, cache)
	}
}
