package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// handleNotify publishes a message on a pub/sub channel. Delivery at a later
// time is asynq's ProcessAt/ProcessIn at enqueue time.
func (w *Worker) handleNotify(ctx context.Context, job *Job[tasks.NotifyArgs]) error {
	n, err := w.deps.Redis.Publish(ctx, job.Args.Channel, job.Args.Message).Result()
	if err != nil {
		return fmt.Errorf("publish on %q: %w", job.Args.Channel, err)
	}
	w.logger.LogAttrs(ctx, slog.LevelDebug, "published", slog.String("channel", job.Args.Channel), slog.Int64("receivers", n))
	if job.Task.ResultWriter() != nil {
		_, _ = job.Task.ResultWriter().Write([]byte(fmt.Sprintf(`{"receivers":%d}`, n)))
	}
	return nil
}
