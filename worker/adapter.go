package worker

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// Job is one delivery of a typed job to its handler.
type Job[P any] struct {
	// ID is asynq's task id.
	ID string
	// Queue is the queue the job came from.
	Queue string
	// Retry is how many times the job has been retried so far.
	Retry int
	// Args is the decoded, validated payload.
	Args *P
	// Task is the underlying asynq task (for its ResultWriter).
	Task *asynq.Task
}

// HandlerFunc handles one typed job.
type HandlerFunc[P any] func(ctx context.Context, job *Job[P]) error

// Handle registers fn for kind on mux through the one generic adapter: the
// payload is decoded (unknown fields rejected) and validated before fn runs.
// A payload that does not decode or validate is archived at once
// (asynq.SkipRetry) with an error naming the field: retrying cannot fix it.
// Under a Worker, a payload naming one of its internal keys (tasks.Guard)
// is archived the same way.
func Handle[P any, PP interface {
	*P
	tasks.Payload
}](mux *asynq.ServeMux, fn HandlerFunc[P]) {
	var zero P
	kind := PP(&zero).Kind()
	mux.HandleFunc(kind, func(ctx context.Context, t *asynq.Task) error {
		args := new(P)
		if err := tasks.DecodeInto(kind, t.Payload(), PP(args)); err != nil {
			return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		if g := guardFrom(ctx); g != nil {
			if err := g.Check(PP(args)); err != nil {
				return fmt.Errorf("%v: %w", err, asynq.SkipRetry)
			}
		}
		job := &Job[P]{Args: args, Task: t}
		job.ID, _ = asynq.GetTaskID(ctx)
		job.Queue, _ = asynq.GetQueueName(ctx)
		job.Retry, _ = asynq.GetRetryCount(ctx)
		return fn(ctx, job)
	})
}
