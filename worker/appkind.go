package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// WithKind registers fn as the handler of a kind of the application's own,
// declared by its payload type P (tasks.Declared: Kind, Validate,
// KindDefaults). The job goes through the same adapter as the built-in
// kinds (decoded with unknown fields refused, validated, archived at once
// when bad) and the same middleware (logs, metrics by kind, panic
// recovery, cancellation). The worker serves the kind's queue besides
// worker.queues, and records the kind in Redis while it runs, so that the
// inbox and `cachekeeper enqueue job` accept it.
//
//	w, err := worker.New(cfg, deps, logger, worker.WithKind(func(ctx context.Context, job *worker.Job[GreetArgs]) error {
//		return greet(ctx, job.Args.Name)
//	}))
func WithKind[P any, PP interface {
	*P
	tasks.Declared
}](fn HandlerFunc[P]) Option {
	return func(w *Worker) error {
		spec, err := tasks.Describe(PP(new(P)))
		if err != nil {
			return fmt.Errorf("worker.WithKind: %w", err)
		}
		if fn == nil {
			return fmt.Errorf("worker.WithKind(%q): handler is nil", spec.Kind)
		}
		if slices.Contains(w.kinds, spec.Kind) {
			return fmt.Errorf("worker.WithKind(%q): the worker already handles this kind; pick another name", spec.Kind)
		}
		Handle[P, PP](w.mux, fn)
		w.kinds = append(w.kinds, spec.Kind)
		w.appKinds = append(w.appKinds, spec)
		w.metrics.forKind(spec.Kind) // its series from zero, like the built-in kinds'
		if _, ok := w.cfg.Worker.Queues[spec.Queue]; !ok {
			queues := make(map[string]int, len(w.cfg.Worker.Queues)+1)
			for q, weight := range w.cfg.Worker.Queues {
				queues[q] = weight
			}
			queues[spec.Queue] = 1
			w.cfg.Worker.Queues = queues
		}
		return nil
	}
}

// ErrNoHandler is a job's error on a worker without a handler for its
// kind. asynq puts the job back (in the retry state, for NoHandlerDelay)
// without counting a retry, for a worker that has the handler; the job is
// not run, and its error says which worker passed it on.
var ErrNoHandler = errors.New("no handler for this kind on this worker")

// NoHandlerDelay is how long a job this worker has no handler for waits
// before it is offered again (plus up to as much jitter).
const NoHandlerDelay = 2 * time.Second

// passOn answers ErrNoHandler for a kind this worker does not handle,
// before the job is logged or counted as this worker's.
//
// A job only lands here when its queue is served by workers with different
// handlers: each declared kind has a queue of its own that only workers
// handling it serve. Should one land here anyway, it waits visible (state
// retry, error "no handler ...", retry count unchanged) and is offered
// again until a worker that handles it takes it. One exception is asynq's:
// a job whose retries are already spent (max_retry 0, or failed that many
// times) is archived instead; `cachekeeper task run ID` sends it back.
func (w *Worker) passOn(next asynq.Handler) asynq.Handler {
	handled := make(map[string]bool, len(w.kinds))
	for _, k := range w.kinds {
		handled[k] = true
	}
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if handled[t.Type()] {
			return next.ProcessTask(ctx, t)
		}
		id, _ := asynq.GetTaskID(ctx)
		w.logger.LogAttrs(ctx, slog.LevelInfo, "job passed on: no handler for its kind here",
			slog.String("task_id", id), slog.String("kind", t.Type()))
		return fmt.Errorf("%w (kind %q; handled here: %v)", ErrNoHandler, t.Type(), w.kinds)
	})
}

// isFailure tells asynq not to count a job passed on as a failed attempt.
func isFailure(err error) bool { return !errors.Is(err, ErrNoHandler) }

// retryDelay offers a job passed on again soon; others back off as asynq's
// default does.
func retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if errors.Is(err, ErrNoHandler) {
		return NoHandlerDelay + rand.N(NoHandlerDelay)
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}

// publishKinds records the declared kinds this worker handles in Redis and
// refreshes them until ctx ends (see internal/catalog).
func (w *Worker) publishKinds(ctx context.Context) error {
	ttl := catalog.DefaultTTL
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := catalog.Publish(ctx, w.deps.Redis, w.keys, w.appKinds, ttl); err != nil && ctx.Err() == nil {
				w.logger.Warn("could not refresh the kinds this worker handles", slog.String("error", err.Error()))
			}
		}
	}
}
