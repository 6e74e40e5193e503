package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Coalescing of single-id warms rides on asynq's group aggregation:
// tasks.Client.WarmCache enqueues each warm into one of the cache's groups,
// tasks.WarmGroupFor(cache, id) ("cache:user#0" to "#3" by a hash of the id),
// and every asynq server of the worker
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
	cache, shard := groupCache(group)
	ids := make([]string, 0, len(ts))
	var others []*asynq.Task
	for _, t := range ts {
		a, ok := decodeWarm(t)
		if !ok || (a.Cache != cache && a.Cache != shard) {
			others = append(others, t)
			continue
		}
		cache = a.Cache
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

// decodeWarm reads a grouped warm. The aggregator reads thousands per batch,
// so a payload exactly as WarmCache writes it ({"cache":"user","ids":["42"]},
// checked by encoding it back) takes a plain unmarshal; anything else goes
// through the strict decoder (unknown fields rejected).
func decodeWarm(t *asynq.Task) (tasks.WarmArgs, bool) {
	var a tasks.WarmArgs
	if t.Type() != tasks.KindWarm {
		return a, false
	}
	var fast struct {
		Cache string   `json:"cache"`
		IDs   []string `json:"ids"`
	}
	if json.Unmarshal(t.Payload(), &fast) == nil {
		a = tasks.WarmArgs{Cache: fast.Cache, IDs: fast.IDs}
		if again, err := json.Marshal(a); err == nil && bytes.Equal(again, t.Payload()) && a.Validate() == nil {
			return a, true
		}
	}
	a = tasks.WarmArgs{}
	if tasks.DecodeInto(tasks.KindWarm, t.Payload(), &a) != nil {
		return a, false
	}
	return a, true
}

// groupCache returns the cache a group name stands for: "cache:user" is
// user, and "cache:user#2" (a shard, see tasks.WarmGroupFor) is user, or the
// cache literally named "user#2" (second result) if one is.
func groupCache(group string) (string, string) {
	rest, _ := strings.CutPrefix(group, tasks.WarmGroupPrefix)
	if i := strings.LastIndexByte(rest, '#'); i > 0 {
		if _, err := strconv.Atoi(rest[i+1:]); err == nil {
			return rest[:i], rest
		}
	}
	return rest, rest
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
