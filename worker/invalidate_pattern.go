package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// patternResult is what cache:invalidate_pattern reports through the result
// writer, as it goes (about once a second) and at the end.
type patternResult struct {
	Pattern string `json:"pattern"`
	invalidate.PatternResult
	ElapsedMS int64   `json:"elapsed_ms"`
	KeysPerS  float64 `json:"keys_per_s"`
	Done      bool    `json:"done"`
}

// handleInvalidatePattern deletes every key matching the pattern with SCAN
// and UNLINK on every master (keys of declared caches fenced, cachekeeper's
// and asynq's own keys never touched), then publishes one event with the
// pattern, a sample of the keys and the count. Match-everything patterns
// were refused by Validate unless allow_all is set.
func (iv *invalidation) handleInvalidatePattern(ctx context.Context, job *Job[tasks.InvalidatePatternArgs]) error {
	a := job.Args
	pacer := paced(iv.w.deps.Redis, iv.w.cfg.Pace)
	defer pacer.Stop()
	var lastReport time.Time
	res, err := iv.inv.Pattern(ctx, invalidate.PatternOptions{
		Pacer:            pacer,
		Pattern:          a.Pattern,
		MaxKeysPerSecond: a.MaxKeysPerSecond,
		Sample:           iv.sampleSize(),
		Progress: func(r invalidate.PatternResult) {
			if time.Since(lastReport) >= time.Second {
				lastReport = time.Now()
				storeResult(job.Task, newPatternResult(a.Pattern, r, false))
			}
		},
	})
	iv.w.metrics.Keys.WithLabelValues(tasks.KindInvalidatePattern, "deleted").Add(float64(res.Deleted))
	if err != nil {
		return skipRetryIfInvalid(err)
	}
	iv.w.send.publish(ctx, tasks.KindInvalidatePattern, events.Event{
		Type: events.TypeInvalidated, Pattern: a.Pattern, Keys: res.Sample, KeyCount: int(res.Deleted), TaskID: job.ID,
	})
	iv.w.logger.LogAttrs(ctx, slog.LevelInfo, "pattern invalidated", slog.String("pattern", a.Pattern),
		slog.Int64("scanned", res.Scanned), slog.Int64("deleted", res.Deleted), slog.Int64("fenced", res.Fenced),
		slog.Int64("internal_kept", res.Internal), slog.Duration("elapsed", res.Elapsed))
	storeResult(job.Task, newPatternResult(a.Pattern, res, true))
	return nil
}

func newPatternResult(pattern string, r invalidate.PatternResult, done bool) patternResult {
	out := patternResult{Pattern: pattern, PatternResult: r, ElapsedMS: r.Elapsed.Milliseconds(), Done: done}
	if s := r.Elapsed.Seconds(); s > 0 {
		out.KeysPerS = float64(int64(float64(r.Deleted)/s*10)) / 10
	}
	return out
}

// sampleSize is how many keys an event lists (the publisher caps it anyway).
func (iv *invalidation) sampleSize() int {
	if iv.w.events == nil {
		return 0
	}
	return iv.w.cfg.Events.MaxKeys
}
