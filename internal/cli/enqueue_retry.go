package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// enqueueRetryFor is how long `cachekeeper enqueue` keeps retrying a failed
// enqueue (Redis restarting, a failover) before it reports the error.
const enqueueRetryFor = 15 * time.Second

// enqueueRiding enqueues payload and retries a failure with backoff for
// enqueueRetryFor. Every attempt carries the same task id (the caller's
// --task-id, or one made here), so an attempt whose reply was lost and that
// did land is found on the next (a conflict on our own id): the job is
// enqueued exactly once. explicitID says the id is the caller's, whose
// conflict on the first attempt is a real duplicate.
func enqueueRiding(ctx context.Context, io IO, svc *services, payload tasks.Payload, opts []tasks.Option, explicitID string) (*asynq.TaskInfo, error) {
	id := explicitID
	if id == "" {
		id = uuid.NewString()
		opts = append(opts, tasks.TaskID(id))
	}
	deadline := time.Now().Add(enqueueRetryFor)
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		info, err := svc.client.Enqueue(ctx, payload, opts...)
		if err == nil {
			return info, nil
		}
		if errors.Is(err, tasks.ErrDuplicateTask) {
			if attempt == 0 {
				return nil, err
			}
			// An earlier attempt landed although its reply was lost.
			insp := svc.inspector()
			if found, ferr := findTask(insp, "", id); ferr == nil {
				return found, nil
			}
			return nil, err
		}
		if errors.Is(err, tasks.ErrInvalidPayload) || errors.Is(err, tasks.ErrDuplicateUnique) || ctx.Err() != nil || time.Now().After(deadline) {
			return nil, err
		}
		if attempt == 0 {
			fmt.Fprintf(io.Stderr, "enqueue failed (%v); retrying for up to %s\n", err, enqueueRetryFor)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
