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

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// Coalescing of warms: tasks.Client.WarmCache adds ids to the cache's
// pending set (keys.WarmPending, each id scored by a request sequence
// number), one Redis command per call and no job. The coalescer, a part of
// every worker that warms caches, takes the pending ids every
// warm.coalesce_interval, oldest first, and enqueues them as cache:warm jobs
// of up to warm.coalesce_max_size ids on warm.coalesce_queue.
//
// Nothing is lost and nothing is warmed from a stale request:
//   - ids leave the set only after the job holding them is enqueued (the
//     acknowledgement removes the members scored at most the batch's highest
//     sequence number); a crash or a failed enqueue in between leaves them
//     pending for the next pass (at worst they are warmed twice, which is
//     harmless);
//   - an id asked for again after the coalescer read it gets a higher
//     sequence number, survives the acknowledgement and is warmed again by a
//     later job, whose database read starts after that request.
//
// A lease (keys.WarmDrain, renewed by every batch) lets one worker of a
// fleet drain a cache at a time, so that replicas do not enqueue the same
// ids twice; another worker takes over when it expires.

// coalesceLease is how long a worker keeps the right to drain a cache
// without taking a batch. It must exceed the time one enqueue can take.
const coalesceLease = 30 * time.Second

// maxBatchesPerDrain bounds one pass over one cache, so that a cache whose
// producers outpace the worker does not starve the others: the rest waits
// for the next pass.
const maxBatchesPerDrain = 100

// takeScript returns up to ARGV[3] of the oldest pending ids of a cache,
// flat as id, sequence, id, sequence..., and renews the lease (KEYS[2]) of
// owner ARGV[1] for ARGV[2] ms. It returns false when another worker holds
// the lease, and an empty list (releasing the caller's lease) when nothing is
// pending.
//
// KEYS: pending set, lease. ARGV: owner, lease_ms, max.
var takeScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return false end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
if #ids == 0 then
  if owner then redis.call('DEL', KEYS[2]) end
  return {}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return ids
`)

// ackScript removes the ids of an enqueued batch: the members scored at most
// ARGV[2], the batch's highest sequence number (sequence numbers are unique,
// and the batch was the lowest ones). With ARGV[3] = "1" it also releases the
// lease if owner ARGV[1] still holds it.
//
// KEYS: pending set, lease. ARGV: owner, highest sequence, release.
var ackScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if ARGV[3] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
`)

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
		logger: w.logger,
	}
	w.coalesce = c
	w.addRunner("warm coalescer", c.run)
	return nil
}

// run drains every cache every interval until ctx ends. The worker runs the
// first pass itself before its servers start (see Worker.Run).
func (c *coalescer) run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.drainAll(ctx)
		}
	}
}

// drainAll drains each cache once; a failure is logged and left for the
// next pass (the ids stay pending).
func (c *coalescer) drainAll(ctx context.Context) {
	for _, cache := range c.caches {
		if _, err := c.drain(ctx, cache); err != nil && ctx.Err() == nil {
			c.logger.LogAttrs(ctx, slog.LevelWarn, "coalesced warms: will try again",
				slog.String("cache", cache), slog.String("error", err.Error()))
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
		vals, err := takeScript.Run(ctx, c.rdb, k, c.owner, coalesceLease.Milliseconds(), c.maxSize).StringSlice()
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
				return total, fmt.Errorf("enqueue %d coalesced ids: %w", len(ids), err)
			}
		}
		last := vals[len(vals)-1]
		done := len(vals)/2 < c.maxSize
		release := "0"
		if done {
			release = "1"
		}
		if err := ackScript.Run(ctx, c.rdb, k, c.owner, last, release).Err(); err != nil {
			return total, fmt.Errorf("acknowledge %d enqueued ids: %w", len(ids), err)
		}
		total += len(ids)
		c.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms enqueued", slog.String("cache", cache), slog.Int("ids", len(ids)))
		if done {
			return total, nil
		}
	}
	return total, nil
}
