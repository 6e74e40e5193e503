package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/coalesce"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// invalidateLease is how long a worker keeps the right to drain a cache's
// pending invalidations without taking a batch: a worker that dies holding
// it delays the others by at most this much. One batch (at most
// invalidate.coalesce_max_size fenced deletes) takes milliseconds.
const invalidateLease = 5 * time.Second

// registerCoalescedInvalidation adds the part that runs coalesced
// invalidations (tasks.Client.Invalidate, single-id inbox entries): it
// blocks on the wake lists of the caches whose keys are made of the id
// alone and deletes their pending ids in fenced batches
// (internal/coalesce, internal/invalidate).
func (iv *invalidation) registerCoalesced() error {
	w := iv.w
	caches := iv.inv.ByID()
	if len(caches) == 0 {
		return nil
	}
	rule := w.keys.Rule(w.cfg.OwnedKeys()...)
	batch := iv.inv.Batch(invalidate.Coalesced{
		Publisher: w.events,
		OnBatch: func(_ string, _ []string, existed int) {
			w.metrics.Keys.WithLabelValues(tasks.KindInvalidate, "deleted").Add(float64(existed))
		},
		Logger: w.logger,
	})
	d := &coalesce.Drainer{
		Redis: w.deps.Redis,
		Set:   func(cache string) coalesce.Set { return coalesce.InvalidateSet(w.keys, cache) },
		// Under the worker's internal-key rule, as a job (protect.go).
		Run: func(ctx context.Context, cache string, ids []string) error {
			g := &keys.Guard{Rule: rule}
			err := batch(keys.WithGuard(ctx, g), cache, ids)
			if n := g.Skipped(); n > 0 {
				w.metrics.Keys.WithLabelValues(tasks.KindInvalidate, "internal_skipped").Add(float64(n))
				w.logger.LogAttrs(ctx, slog.LevelWarn, "coalesced invalidation met keys of cachekeeper or asynq and left them alone",
					slog.String("cache", cache), slog.Int64("internal_skipped", n))
			}
			return err
		},
		What:    "invalidations",
		Lease:   invalidateLease,
		MaxSize: w.cfg.Invalidate.CoalesceMaxSize,
		Logger:  w.logger,
	}
	if err := d.Init(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	opts := coalesce.WaitOptions{
		// The BLPOPs wait on connections of their own, closed on stop.
		NewBlocking: func() (redis.UniversalClient, error) {
			c, ok := w.connOpt.MakeRedisClient().(redis.UniversalClient)
			if !ok {
				return nil, fmt.Errorf("unsupported Redis connection option %T", w.connOpt)
			}
			return c, nil
		},
		Window: w.cfg.Invalidate.CoalesceWindow,
	}
	w.addRunner("coalesced invalidation", func(ctx context.Context) error {
		return d.Wait(ctx, caches, opts)
	})
	return nil
}
