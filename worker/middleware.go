package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/hibiken/asynq"
)

// Outcomes of one run of a job, as logged and counted.
const (
	OutcomeSuccess = "success"
	OutcomeRetry   = "retry"   // failed, will be retried
	OutcomeFailed  = "failed"  // failed on its last attempt: archived
	OutcomeInvalid = "invalid" // bad payload or SkipRetry: archived at once
	// OutcomeCancelled: stopped by `cachekeeper task cancel`, archived.
	OutcomeCancelled = "cancelled"
)

// ErrPanic wraps a handler panic turned into a task error.
var ErrPanic = errors.New("handler panicked")

// outcome classifies a handler's result.
func outcome(ctx context.Context, err error) string {
	if err == nil {
		return OutcomeSuccess
	}
	if errors.Is(err, ErrCancelled) {
		return OutcomeCancelled
	}
	if errors.Is(err, asynq.SkipRetry) {
		return OutcomeInvalid
	}
	retry, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if retry >= maxRetry {
		return OutcomeFailed
	}
	return OutcomeRetry
}

// instrument logs and measures every job. A success is logged at debug level
// only, so the hot path costs a clock read and two counter updates.
func instrument(logger *slog.Logger, m *Metrics) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			elapsed := time.Since(start)
			out := outcome(ctx, err)
			m.observe(t.Type(), out, elapsed)
			level := slog.LevelDebug
			switch out {
			case OutcomeRetry, OutcomeCancelled:
				level = slog.LevelWarn
			case OutcomeFailed, OutcomeInvalid:
				level = slog.LevelError
			}
			if !logger.Enabled(ctx, level) {
				return err
			}
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retry, _ := asynq.GetRetryCount(ctx)
			attrs := []slog.Attr{
				slog.String("task_id", id), slog.String("kind", t.Type()), slog.String("queue", queue),
				slog.Int("retry", retry), slog.Duration("duration", elapsed), slog.String("outcome", out),
			}
			if err != nil {
				attrs = append(attrs, slog.String("error", err.Error()))
			}
			logger.LogAttrs(ctx, level, "task done", attrs...)
			return err
		})
	}
}

// recoverPanics turns a handler panic into a task error (so asynq retries it)
// and logs the stack.
func recoverPanics(logger *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			defer func() {
				if r := recover(); r != nil {
					id, _ := asynq.GetTaskID(ctx)
					logger.LogAttrs(ctx, slog.LevelError, "handler panicked",
						slog.String("task_id", id), slog.String("kind", t.Type()),
						slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
					err = fmt.Errorf("%w: %v", ErrPanic, r)
				}
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}
