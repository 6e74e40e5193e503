package worker

import (
	"context"
	"log/slog"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// The internal-key rule (keys.Rule) is enforced a second time when a job
// runs, whoever enqueued it (a producer without the workers' configuration,
// a job enqueued before an upgrade, a hand-written asynq task):
//
//   - the adapter (Handle) refuses a payload that names an internal key
//     under this worker's key_prefix and inbox key (tasks.Guard), archived at
//     once like any invalid payload;
//   - every layer that touches keys (package scan, package invalidate) skips
//     internal keys it meets, counted in the job's keys.Guard, which protect
//     turns into the keys_total{action="internal_skipped"} metric and a
//     warning.

type guardCtxKey struct{}

// guardFrom returns the payload guard protect put in ctx, or nil when the
// handler runs outside a worker (Handle on a mux of one's own).
func guardFrom(ctx context.Context) *tasks.Guard {
	g, _ := ctx.Value(guardCtxKey{}).(*tasks.Guard)
	return g
}

// protect runs every job under the worker's internal-key rule.
func protect(logger *slog.Logger, m *Metrics, rule keys.Rule, guard *tasks.Guard) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			g := &keys.Guard{Rule: rule}
			ctx = context.WithValue(keys.WithGuard(ctx, g), guardCtxKey{}, guard)
			err := next.ProcessTask(ctx, t)
			if n := g.Skipped(); n > 0 {
				m.Keys.WithLabelValues(t.Type(), "internal_skipped").Add(float64(n))
				id, _ := asynq.GetTaskID(ctx)
				logger.LogAttrs(ctx, slog.LevelWarn, "job met keys of cachekeeper or asynq and left them alone",
					slog.String("task_id", id), slog.String("kind", t.Type()), slog.Int64("internal_skipped", n))
			}
			return err
		})
	}
}
