package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Tag set pruning: one worker of the fleet walks every tag set per
// interval, removing members whose key is gone, at a bounded pace.
const (
	tagPruneInterval         = 10 * time.Minute
	tagPruneMembersPerSecond = 50000
)

// tagResult is what cache:invalidate_tag reports through the result writer.
type tagResult struct {
	Tag     string `json:"tag"`
	Members int64  `json:"members"`
	Deleted int64  `json:"deleted"`
}

// handleInvalidateTag deletes every key carrying the tag (fenced) and the
// tag set, then publishes one event with the tag, a sample of the keys and
// their count. A retry finishes what an interrupted run left.
func (iv *invalidation) handleInvalidateTag(ctx context.Context, job *Job[tasks.InvalidateTagArgs]) error {
	pacer := paced(iv.w.deps.Redis, iv.w.cfg.Pace)
	defer pacer.Stop()
	res, err := iv.inv.Paced(pacer).Tag(ctx, job.Args.Tag, job.ID, iv.sampleSize())
	iv.w.metrics.Keys.WithLabelValues(tasks.KindInvalidateTag, "deleted").Add(float64(res.Deleted))
	if err != nil {
		return skipRetryIfInvalid(err)
	}
	iv.w.send.publish(ctx, tasks.KindInvalidateTag, events.Event{
		Type: events.TypeInvalidated, Tag: job.Args.Tag, Keys: res.Sample, KeyCount: int(res.Members), TaskID: job.ID,
	})
	iv.w.logger.LogAttrs(ctx, slog.LevelInfo, "tag invalidated", slog.String("tag", job.Args.Tag),
		slog.Int64("members", res.Members), slog.Int64("deleted", res.Deleted))
	storeResult(job.Task, withPace(tagResult{Tag: job.Args.Tag, Members: res.Members, Deleted: res.Deleted}, pacer))
	return nil
}

// pruneTags runs with the worker: shortly after start and then every
// tagPruneInterval, it prunes every tag set unless another worker did within
// the interval. A failed pass is logged and tried again next interval.
func (iv *invalidation) pruneTags(ctx context.Context) error {
	// Workers started together do not all race for the marker at once.
	wait := time.Duration(rand.Int64N(int64(30 * time.Second)))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = tagPruneInterval
		pacer := paced(iv.w.deps.Redis, iv.w.cfg.Pace)
		res, ran, err := iv.inv.Paced(pacer).PruneTagsIfDue(ctx, tagPruneInterval, tagPruneMembersPerSecond)
		pacer.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			iv.w.logger.LogAttrs(ctx, slog.LevelWarn, "tag set pruning failed; next try in one interval",
				slog.Duration("interval", tagPruneInterval), slog.String("error", err.Error()))
			continue
		}
		if ran {
			iv.w.metrics.Keys.WithLabelValues("tag_prune", "pruned").Add(float64(res.Pruned))
			iv.w.logger.LogAttrs(ctx, slog.LevelInfo, "tag sets pruned", slog.Int64("sets", res.Sets),
				slog.Int64("members", res.Members), slog.Int64("pruned", res.Pruned))
		}
	}
}
