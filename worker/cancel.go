package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ErrCancelled is the cause of a job's context ended by `cachekeeper task
// cancel` (a message on keys.CancelChannel). The job is archived with this
// reason and never retried; `cachekeeper task run ID` runs it again (a
// whole-table warm resumes from its checkpoint).
//
// Archived rather than deleted: the record stays, with why it stopped, for
// `task show` and the UI, and a deliberate re-run needs nothing but its id.
// asynq's own cancellation (Inspector.CancelProcessing, the UI's cancel
// button) ends the context behind the handler's back and asynq retries the
// job; cachekeeper's channel comes first so that a cancelled job stays
// stopped.
var ErrCancelled = errors.New("cancelled")

// canceller runs each job with a context it ends when the job's id arrives
// on the cancel channel.
type canceller struct {
	channel string
	logger  *slog.Logger
	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // task id -> its cancel
}

func newCanceller(channel string, logger *slog.Logger) *canceller {
	return &canceller{channel: channel, logger: logger, running: map[string]context.CancelCauseFunc{}}
}

// middleware gives each job a context the canceller can end; a job whose
// handler fails after a cancellation is archived at once (asynq.SkipRetry)
// with the reason "cancelled". A handler that finishes its work anyway
// succeeds.
func (c *canceller) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, ok := asynq.GetTaskID(ctx)
		if !ok {
			return next.ProcessTask(ctx, t)
		}
		ctx, cancel := context.WithCancelCause(ctx)
		c.mu.Lock()
		c.running[id] = cancel
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.running, id)
			c.mu.Unlock()
			cancel(nil)
		}()
		err := next.ProcessTask(ctx, t)
		if err != nil && errors.Is(context.Cause(ctx), ErrCancelled) {
			return fmt.Errorf("%w by 'cachekeeper task cancel', not retried (%v): %w", ErrCancelled, err, asynq.SkipRetry)
		}
		return err
	})
}

// cancel ends the job with id if it runs here, and reports whether it did.
func (c *canceller) cancel(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	stop, ok := c.running[id]
	if ok {
		stop(ErrCancelled)
	}
	return ok
}

// run listens on the cancel channel until ctx ends.
func (c *canceller) run(ctx context.Context, rdb redis.UniversalClient) error {
	ps := rdb.Subscribe(ctx, c.channel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return nil
			}
			if c.cancel(msg.Payload) {
				c.logger.Info("job cancelled", slog.String("task_id", msg.Payload))
			}
		}
	}
}
