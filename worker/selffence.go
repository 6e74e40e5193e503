package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// ErrCutOff is the cause of a job's context cancelled because this worker
// has not reached Redis for so long that other workers will soon take the
// job over (see recover.go).
var ErrCutOff = errors.New("worker cut off from Redis: other workers may re-run this job, so it stops here")

// selfFence cancels the running jobs of a worker whose recoverer has not
// reached Redis for limit, so that a job another worker re-runs after
// worker.recover_after is not still running here.
type selfFence struct {
	limit  time.Duration
	lastOK atomic.Int64 // unix nanos

	mu      sync.Mutex
	next    uint64
	running map[uint64]context.CancelCauseFunc
}

func newSelfFence(limit time.Duration) *selfFence {
	f := &selfFence{limit: limit, running: map[uint64]context.CancelCauseFunc{}}
	f.ok()
	return f
}

// ok records that Redis answered.
func (f *selfFence) ok() { f.lastOK.Store(time.Now().UnixNano()) }

// check cancels every running job when Redis has not answered for limit;
// it reports whether it did.
func (f *selfFence) check() bool {
	if time.Since(time.Unix(0, f.lastOK.Load())) < f.limit {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, cancel := range f.running {
		cancel(ErrCutOff)
		delete(f.running, id)
	}
	return true
}

// watch runs check every interval until ctx ends.
func (f *selfFence) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.check()
		}
	}
}

// middleware runs each job with a context the fence can cancel.
func (f *selfFence) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		ctx, cancel := context.WithCancelCause(ctx)
		f.mu.Lock()
		f.next++
		id := f.next
		f.running[id] = cancel
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.running, id)
			f.mu.Unlock()
			cancel(nil)
		}()
		err := next.ProcessTask(ctx, t)
		if err != nil && errors.Is(context.Cause(ctx), ErrCutOff) {
			return errors.Join(ErrCutOff, err)
		}
		return err
	})
}
