package worker

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// ErrCutOff is the cause of a job's context cancelled because another
// worker has taken the job over, or soon will: this worker was paused or
// cut off from Redis, or Redis refuses its heartbeat while it answers others.
var ErrCutOff = errors.New("worker cut off from Redis: another worker runs (or will run) this job, so it stops here")

// startRecheckAfter is how long a job may wait between its dequeue and its
// start before its lease is checked first (normally microseconds; seconds
// mean the process was paused in between).
const startRecheckAfter = time.Second

// selfFence keeps one job from running in two places because of recovery
// (recover.go): the recoverer of another worker hands a job back once its
// lease has not been extended for worker.recover_after, so a worker that
// cannot extend its leases must stop its copies in time, and one that
// could not for a while must find out which jobs it lost.
//
// It tells three states apart, from the recoverer's reads (reach) and the
// heartbeat's writes (the lease tap's beats):
//
//   - Redis answers this worker's reads but refuses its heartbeat writes
//     (out of memory, a permission) for limit: other workers see it dead
//     while they are not, so every running job is cancelled (ErrCutOff)
//     and fenced (asynq's write of its outcome is dropped);
//   - nothing reaches Redis for limit (a network stall, a pause, or Redis
//     itself stalled, which stalls every worker alike): running jobs go on,
//     and the moment Redis answers again every one of them is checked
//     against its lease; those another worker took over are cancelled and
//     fenced. If Redis never answers, asynq ends the job when its own 30s
//     lease runs out, writing nothing;
//   - a job that waited more than startRecheckAfter between dequeue and
//     start (a pause) has its lease checked before it runs.
type selfFence struct {
	limit  time.Duration
	book   *leaseBook
	logger *slog.Logger
	reach  atomic.Int64 // unix nanos of the recoverer's last read of Redis

	mu      sync.Mutex
	running map[string]*runningJob // by task id
	anon    uint64                 // keys for jobs run outside an asynq server
	suspect bool                   // cut off for limit; leases to check
	cutting bool                   // writes refused while reads answer
	cut     atomic.Int64           // jobs cancelled or refused (for tests and logs)
}

type runningJob struct {
	queue  string
	cancel context.CancelCauseFunc
	// cutOff: the worker was cut off while the job ran, so its lease is
	// checked before asynq writes its outcome.
	cutOff bool
}

func newSelfFence(limit time.Duration, book *leaseBook, logger *slog.Logger) *selfFence {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &selfFence{limit: limit, book: book, logger: logger, running: map[string]*runningJob{}}
	f.ok()
	if book != nil {
		book.lost = func(ids []string) { f.cancel(ids, "taken over by another worker while this one was paused or cut off") }
	}
	return f
}

// ok records that Redis answered the recoverer's reads.
func (f *selfFence) ok() { f.reach.Store(time.Now().UnixNano()) }

// runningIDs returns the ids of the jobs running here: the recoverer counts
// them live whatever the heartbeat managed to write.
func (f *selfFence) runningIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.running))
	for id, j := range f.running {
		if j.queue != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// check looks at the state once; ctx bounds the lease checks.
func (f *selfFence) check(ctx context.Context) {
	now := time.Now()
	reachAge := now.Sub(time.Unix(0, f.reach.Load()))
	var beatAge time.Duration
	refused := false
	if f.book != nil {
		beatAge = f.book.beatAge(now)
		refused = f.book.beatsRefused()
	}
	f.mu.Lock()
	wasSuspect, wasCutting := f.suspect, f.cutting
	f.mu.Unlock()
	switch {
	case refused && beatAge > f.limit && reachAge < f.limit:
		if !wasCutting {
			f.logger.Warn("Redis answers but refuses this worker's heartbeat: other workers will take its jobs over, so it stops them",
				slog.Duration("heartbeat_age", beatAge.Round(time.Millisecond)))
		}
		f.setState(false, true)
		f.cancel(f.allIDs(), "heartbeat refused by Redis")
	case beatAge > f.limit || reachAge > f.limit:
		if !wasSuspect {
			f.logger.Warn("worker cut off from Redis: running jobs go on and are checked against their leases when Redis answers",
				slog.Duration("for", max(beatAge, reachAge).Round(time.Millisecond)))
		}
		f.setState(true, false)
		f.mu.Lock()
		for _, j := range f.running {
			j.cutOff = true
		}
		f.mu.Unlock()
	default:
		if wasCutting {
			f.logger.Info("Redis takes this worker's heartbeat again")
		}
		if wasSuspect {
			lost, err := f.verify(ctx)
			if err != nil {
				return // still suspect; the next check tries again
			}
			f.logger.Info("worker reaches Redis again; running jobs checked against their leases", slog.Int("lost", lost))
		}
		f.setState(false, false)
	}
}

func (f *selfFence) setState(suspect, cutting bool) {
	f.mu.Lock()
	f.suspect, f.cutting = suspect, cutting
	f.mu.Unlock()
}

func (f *selfFence) isSuspect() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.suspect
}

func (f *selfFence) allIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.running))
	for id := range f.running {
		ids = append(ids, id)
	}
	return ids
}

// verify checks every running job against its lease and cancels those
// another worker took over; it returns how many.
func (f *selfFence) verify(ctx context.Context) (int, error) {
	if f.book == nil {
		return 0, nil
	}
	byQueue := map[string][]string{}
	f.mu.Lock()
	for id, j := range f.running {
		if j.queue != "" {
			byQueue[j.queue] = append(byQueue[j.queue], id)
		}
	}
	f.mu.Unlock()
	queues := make([]string, 0, len(byQueue))
	for q := range byQueue {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	n := 0
	for _, q := range queues {
		ctx, cancel := context.WithTimeout(ctx, recoverInterval)
		lost, err := f.book.owned(ctx, q, byQueue[q])
		cancel()
		if err != nil {
			return n, err
		}
		f.cancel(lost, "taken over by another worker while this one was paused or cut off")
		n += len(lost)
	}
	return n, nil
}

// cancel stops the running jobs ids with ErrCutOff and fences them.
func (f *selfFence) cancel(ids []string, why string) {
	if len(ids) == 0 {
		return
	}
	if f.book != nil {
		f.book.fence(ids...)
	}
	f.mu.Lock()
	var stopped []string
	for _, id := range ids {
		if j, ok := f.running[id]; ok {
			j.cancel(ErrCutOff)
			delete(f.running, id)
			stopped = append(stopped, id)
		}
	}
	f.mu.Unlock()
	if len(stopped) > 0 {
		f.cut.Add(int64(len(stopped)))
		f.logger.Warn("stopped jobs: "+why, slog.Any("task_ids", stopped))
	}
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
			f.check(ctx)
		}
	}
}

// middleware runs each job with a context the fence can cancel, after
// checking the lease of a job that waited (a pause) or that starts while
// this worker is cut off.
func (f *selfFence) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		if err := f.recheck(ctx, id, queue); err != nil {
			return err
		}
		ctx, cancel := context.WithCancelCause(ctx)
		job := &runningJob{queue: queue, cancel: cancel}
		f.mu.Lock()
		key := id
		if key == "" || queue == "" {
			// Run outside an asynq server (Handler in a test): no lease.
			f.anon++
			key, job.queue = "\x00anon:"+strconv.FormatUint(f.anon, 10), ""
		}
		f.running[key] = job
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			if f.running[key] == job {
				delete(f.running, key)
			}
			f.mu.Unlock()
			cancel(nil)
		}()
		err := next.ProcessTask(ctx, t)
		if err != nil && errors.Is(context.Cause(ctx), ErrCutOff) {
			return errors.Join(ErrCutOff, err)
		}
		f.mu.Lock()
		cutOff := job.cutOff || f.suspect
		f.mu.Unlock()
		if cutOff && job.queue != "" {
			if lerr := f.settle(ctx, id, queue); lerr != nil {
				return errors.Join(lerr, err)
			}
		}
		return err
	})
}

// settle is called when a job ends after the worker was cut off during its
// run (its own Redis calls may have failed for that very reason): before
// asynq writes the outcome, the job's lease is checked, waiting for Redis
// to answer for as long as asynq's lease could still be valid. A job whose
// lease is another worker's, or cannot be seen, is fenced: its outcome is
// not written (a recoverer hands the job back once its lease is stale).
func (f *selfFence) settle(ctx context.Context, id, queue string) error {
	if f.book == nil || f.book.isFenced(id) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), asynqLeaseSeconds*time.Second)
	defer cancel()
	var err error
	for {
		var lost []string
		cctx, ccancel := context.WithTimeout(ctx, recoverInterval)
		lost, err = f.book.owned(cctx, queue, []string{id})
		ccancel()
		if err == nil && len(lost) == 0 {
			return nil
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(fenceCheckInterval):
			continue
		}
		break
	}
	f.book.fence(id)
	f.cut.Add(1)
	reason := "its lease is another worker's now"
	if err != nil {
		reason = "its lease cannot be checked: " + err.Error()
	}
	f.logger.Warn("job ended after this worker was cut off, and "+reason+": its outcome is not written",
		slog.String("task_id", id))
	return ErrCutOff
}

// recheck refuses a job this worker may no longer hold: one that waited
// between dequeue and start, or starts while the worker is cut off, and
// whose lease is not (or cannot be seen to be) this worker's.
func (f *selfFence) recheck(ctx context.Context, id, queue string) error {
	if f.book == nil || id == "" || queue == "" {
		return nil
	}
	h, ok := f.book.lease(id)
	if !ok || (time.Since(h.dequeued) < startRecheckAfter && !f.isSuspect()) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, recoverInterval)
	lost, err := f.book.owned(cctx, queue, []string{id})
	cancel()
	if err == nil && len(lost) == 0 {
		return nil
	}
	f.book.fence(id)
	f.cut.Add(1)
	reason := "its lease is another worker's now"
	if err != nil {
		reason = "its lease cannot be checked: " + err.Error()
	}
	f.logger.Warn("job not started: dequeued before this worker was paused or cut off, and "+reason,
		slog.String("task_id", id), slog.Duration("waited", time.Since(h.dequeued).Round(time.Millisecond)))
	return ErrCutOff
}
