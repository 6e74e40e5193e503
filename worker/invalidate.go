package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// invalidation is the state of the cache:invalidate* handlers and of the
// tag set pruner.
type invalidation struct {
	w   *Worker
	inv *invalidate.Invalidator
	// client enqueues the rewarm that follows an invalidation with rewarm.
	client *tasks.Client
}

// registerInvalidate registers cache:invalidate, cache:invalidate_pattern and
// cache:invalidate_tag, and the tag set pruner when a cache declares tags.
func (w *Worker) registerInvalidate() error {
	caches := make(map[string]invalidate.Cache, len(w.cfg.Caches))
	withTags := false
	for name, spec := range w.cfg.Caches {
		caches[name] = invalidate.Cache{Key: spec.Key, IDColumn: spec.IDCol()}
		withTags = withTags || len(spec.Tags) > 0
	}
	inv, err := invalidate.New(w.deps.Redis, w.keys, w.cfg.Fence.TTL, caches)
	if err != nil {
		return fmt.Errorf("worker: invalidation: %w", err)
	}
	iv := &invalidation{w: w, inv: inv, client: w.deps.Client}
	if iv.client == nil {
		iv.client = tasks.NewClientFromRedis(w.deps.Redis)
	}
	Handle(w.mux, iv.handleInvalidate)
	Handle(w.mux, iv.handleInvalidatePattern)
	Handle(w.mux, iv.handleInvalidateTag)
	w.kinds = append(w.kinds, tasks.KindInvalidate, tasks.KindInvalidatePattern, tasks.KindInvalidateTag)
	if withTags {
		w.addRunner("tag pruner", iv.pruneTags)
	}
	return iv.registerCoalesced()
}

// invalidateResult is what cache:invalidate reports through the result writer.
type invalidateResult struct {
	Keys    int `json:"keys"`
	Deleted int `json:"deleted"`
	// Internal is how many of the keys belonged to cachekeeper or asynq
	// and were left alone (keys.Rule).
	Internal int64  `json:"internal,omitempty"`
	Rewarm   string `json:"rewarm_task_id,omitempty"`
}

// handleInvalidate deletes the keys of (cache, ids) or the given keys, each
// with its fence advanced in the same atomic step (BatchSize keys per round
// trip), publishes one event, and with rewarm enqueues a warm of the ids.
// Running it twice is harmless.
func (iv *invalidation) handleInvalidate(ctx context.Context, job *Job[tasks.InvalidateArgs]) error {
	a := job.Args
	keyList, cache, ids := a.Keys, a.Cache, []string(a.IDs)
	if len(keyList) == 0 {
		var err error
		if keyList, err = iv.inv.KeysFor(a.Cache, a.IDs); err != nil {
			return skipRetryIfInvalid(err)
		}
	} else if c, found, ok := iv.inv.CacheOf(keyList); ok {
		cache, ids = c, found
	}
	existed, err := iv.inv.Keys(ctx, keyList)
	if err != nil {
		return err
	}
	iv.w.metrics.Keys.WithLabelValues(tasks.KindInvalidate, "deleted").Add(float64(existed))
	iv.w.send.publish(ctx, tasks.KindInvalidate, events.Event{
		Type: events.TypeInvalidated, Cache: cache, IDs: ids, Keys: keyList, KeyCount: len(keyList), TaskID: job.ID,
	})
	res := invalidateResult{Keys: len(keyList), Deleted: existed, Internal: keys.GuardFrom(ctx).Skipped()}
	if a.Rewarm {
		opts := []tasks.Option{}
		if job.ID != "" {
			// A retry of this job does not enqueue a second rewarm.
			opts = append(opts, tasks.TaskID("rewarm:"+job.ID))
		}
		info, err := iv.client.Enqueue(ctx, &tasks.WarmArgs{Cache: a.Cache, IDs: a.IDs}, opts...)
		switch {
		case errors.Is(err, tasks.ErrDuplicateTask):
			res.Rewarm = "rewarm:" + job.ID
		case err != nil:
			return fmt.Errorf("enqueue rewarm of %d ids of cache %q: %w", len(a.IDs), a.Cache, err)
		default:
			res.Rewarm = info.ID
		}
	}
	iv.w.logger.LogAttrs(ctx, slog.LevelDebug, "invalidated", slog.String("cache", cache),
		slog.Int("keys", len(keyList)), slog.Int("existed", existed), slog.Bool("rewarm", a.Rewarm))
	storeResult(job.Task, res)
	return nil
}

// skipRetryIfInvalid archives the job at once when retrying cannot help.
func skipRetryIfInvalid(err error) error {
	if errors.Is(err, invalidate.ErrInvalidRequest) {
		return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
	}
	return err
}

// storeResult stores v as the task's JSON result; tasks run outside an asynq
// server (benchmarks) have no result writer.
func storeResult(t *asynq.Task, v any) {
	if t == nil || t.ResultWriter() == nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	_, _ = t.ResultWriter().Write(data)
}
