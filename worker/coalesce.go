package worker

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Coalescing of single-id warms rides on asynq's group aggregation:
// tasks.Client.WarmCache enqueues each warm into the group
// tasks.WarmGroup(cache) ("cache:user"), and every asynq server of the worker
// runs an aggregator that, once per warm.coalesce_grace_period (at most every
// 7s), turns up to warm.coalesce_max_size waiting warms of a group into one
// cache:warm task when the group is full, or quiet for the grace period, or
// older than warm.coalesce_max_delay (whole seconds: asynq's resolution).
// aggregateWarms merges those tasks, reading each id once.

// groupConfig fills the asynq group aggregation settings of a server config
// when the warming family is registered.
func (w *Worker) groupConfig(c *asynq.Config) {
	if w.warm == nil {
		return
	}
	c.GroupAggregator = asynq.GroupAggregatorFunc(w.aggregateWarms)
	c.GroupGracePeriod = w.cfg.Warm.CoalesceGracePeriod
	c.GroupMaxDelay = w.cfg.Warm.CoalesceMaxDelay
	c.GroupMaxSize = w.cfg.Warm.CoalesceMaxSize
}

// aggregateWarms merges the single-id warms of one group into one cache:warm
// task with the ids de-duplicated. A task of the group that is not a valid
// warm of the group's cache (a producer that put something else in the group)
// is enqueued again on its own, ungrouped, so that it is run or archived with
// its own error instead of being lost.
func (w *Worker) aggregateWarms(group string, ts []*asynq.Task) *asynq.Task {
	cache, _ := strings.CutPrefix(group, tasks.WarmGroupPrefix)
	ids := make([]string, 0, len(ts))
	var others []*asynq.Task
	for _, t := range ts {
		var a tasks.WarmArgs
		if t.Type() != tasks.KindWarm || tasks.DecodeInto(tasks.KindWarm, t.Payload(), &a) != nil || a.Cache != cache {
			others = append(others, t)
			continue
		}
		ids = append(ids, a.IDs...)
	}
	ids = cachespec.Dedupe(ids)
	var merged *asynq.Task
	if len(ids) > 0 {
		var err error
		merged, err = tasks.NewTask(&tasks.WarmArgs{Cache: cache, IDs: ids})
		if err != nil {
			w.logger.Error("coalesce warms: build merged task", slog.String("group", group), slog.String("error", err.Error()))
			merged = nil
		}
	}
	if merged == nil && len(others) > 0 {
		merged, others = ungrouped(others[0]), others[1:]
	}
	for _, t := range others {
		w.forwardTask(t, group)
	}
	if merged == nil {
		// Nothing valid at all: hand back the first task so asynq archives it
		// through the adapter with its own error.
		return ungrouped(ts[0])
	}
	w.logger.Debug("coalesced warms", slog.String("group", group), slog.Int("tasks", len(ts)), slog.Int("ids", len(ids)))
	return merged
}

// ungrouped rebuilds t with its kind's defaults (queue, retries, timeout).
func ungrouped(t *asynq.Task) *asynq.Task {
	if info, ok := tasks.Lookup(t.Type()); ok {
		return asynq.NewTask(t.Type(), t.Payload(), asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry), asynq.Timeout(info.Timeout))
	}
	return asynq.NewTask(t.Type(), t.Payload())
}

func (w *Worker) forwardTask(t *asynq.Task, group string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.warm.forward.EnqueueContext(ctx, ungrouped(t)); err != nil {
		w.logger.Error("coalesce warms: re-enqueue a task that does not belong in the group",
			slog.String("group", group), slog.String("kind", t.Type()), slog.String("error", err.Error()))
	}
}
