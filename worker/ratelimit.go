package worker

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// rateLimitJobs holds what the ratelimit:prune handler needs.
type rateLimitJobs struct {
	rdb    redis.UniversalClient
	cfg    config.RateLimitsConfig
	logger *slog.Logger
	pace   config.PaceConfig
}

// registerRateLimits registers ratelimit:prune.
func (w *Worker) registerRateLimits() error {
	if err := w.cfg.RateLimits.Validate(); err != nil {
		return err
	}
	j := &rateLimitJobs{rdb: w.deps.Redis, cfg: w.cfg.RateLimits, logger: w.logger, pace: w.cfg.Pace}
	Handle(w.mux, j.handlePrune)
	w.kinds = append(w.kinds, tasks.KindRateLimitPrune)
	return nil
}

func (j *rateLimitJobs) handlePrune(ctx context.Context, job *Job[tasks.RateLimitPruneArgs]) error {
	pacer := paced(j.rdb, j.pace)
	defer pacer.Stop()
	rep, err := ratelimit.PrunePaced(ctx, j.rdb, j.cfg, *job.Args, pacer)
	attrs := []slog.Attr{slog.String("pattern", rep.Pattern), slog.String("window", rep.Window),
		slog.Int64("scanned", rep.Scanned), slog.Int64("entries_removed", rep.EntriesRemoved),
		slog.Int64("keys_deleted", rep.KeysDeleted), slog.Int64("ttl_fixed", rep.TTLFixed),
		slog.Int64("skipped", rep.Skipped), slog.Int64("duration_ms", rep.DurationMS)}
	if rep.BytesReclaimed != nil {
		attrs = append(attrs, slog.Int64("bytes_reclaimed", *rep.BytesReclaimed), slog.Int64("bytes_measured", rep.BytesMeasured),
			slog.Int64("bytes_measured_keys", rep.BytesMeasuredKeys))
	}
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "rate-limit prune stopped", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
	j.logger.LogAttrs(ctx, slog.LevelInfo, "rate-limit prune done", attrs...)
	writeResult(ctx, j.logger, job.Task.ResultWriter(), withPace(rep, pacer))
	return nil
}

// writeResult stores v as the job's JSON result. A task not run by an asynq
// server (w is nil) has nowhere to store it. The work is done by then, so a
// failure is logged, not returned: a retry would only redo it.
func writeResult(ctx context.Context, logger *slog.Logger, w *asynq.ResultWriter, v any) {
	if w == nil {
		return
	}
	data, err := json.Marshal(v)
	if err == nil {
		_, err = w.Write(data)
	}
	if err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "cannot store job result", slog.String("task_id", w.TaskID()), slog.String("error", err.Error()))
	}
}
