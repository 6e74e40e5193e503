package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// fenceBundle is one asynq server whose client carries the lease tap, with
// a self-fence over its jobs and the recoverer's reach signal fed by a real
// read of Redis every 200ms, against a private redis-server.
type fenceBundle struct {
	r      *testenv.Redis
	book   *leaseBook
	fence  *selfFence
	client *asynq.Client
	insp   *asynq.Inspector
	logs   *testenv.SyncBuffer
}

// startFenced runs handler (wrapped by before, which stands outside the
// fence, as asynq's processor does) in a tapped server until the test ends.
func startFenced(t *testing.T, limit time.Duration, before func(asynq.Handler) asynq.Handler, handler asynq.HandlerFunc) *fenceBundle {
	t.Helper()
	r := testenv.NewRedis(t)
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	b := &fenceBundle{r: r, logs: logs, book: newLeaseBook(r.Client, logger)}
	b.fence = newSelfFence(limit, b.book, logger)
	opt, err := r.Config.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(tapConnOpt{base: opt, book: b.book}, asynq.Config{
		Concurrency: 2, Queues: map[string]int{"default": 1}, TaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	})
	var h asynq.Handler = b.fence.middleware(handler)
	if before != nil {
		h = before(h)
	}
	if err := srv.Start(h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.fence.watch(ctx, 50*time.Millisecond) }()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			if r.Client.Time(pctx).Err() == nil {
				b.fence.ok()
			}
			pcancel()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	b.client = asynq.NewClientFromRedisClient(r.Client)
	b.insp = asynq.NewInspectorFromRedisClient(r.Client)
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Shutdown()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return b
}

// blockingJob is a handler that reports its start and ends with its context
// (or when released), handing its context's cause back.
type blockingJob struct {
	started chan string
	release chan struct{}
	causes  chan error
}

func newBlockingJob() *blockingJob {
	return &blockingJob{started: make(chan string, 4), release: make(chan struct{}), causes: make(chan error, 4)}
}

func (j *blockingJob) handle(ctx context.Context, _ *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	j.started <- id
	select {
	case <-ctx.Done():
		j.causes <- context.Cause(ctx)
		return ctx.Err()
	case <-j.release:
		j.causes <- nil
		return nil
	}
}

func (b *fenceBundle) enqueue(t *testing.T) string {
	t.Helper()
	info, err := b.client.Enqueue(asynq.NewTask("test:job", nil), asynq.Queue("default"), asynq.MaxRetry(5))
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func recv[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
	var zero T
	return zero
}

// takeOver does to id's lease what another worker's dequeue does after the
// recoverer handed the job back: a lease of its own.
func takeOver(t *testing.T, rdb *redis.Client, id string) float64 {
	t.Helper()
	ctx := context.Background()
	score, err := rdb.ZScore(ctx, keys.AsynqLease("default"), id).Result()
	if err != nil {
		t.Fatalf("lease of %s: %v", id, err)
	}
	theirs := score + 17
	rdb.ZAdd(ctx, keys.AsynqLease("default"), redis.Z{Score: theirs, Member: id})
	return theirs
}

// checkLeftAlone checks that the job is still active under the other
// worker's lease, not retried, and that asynq's write of this worker's
// outcome was dropped.
func (b *fenceBundle) checkLeftAlone(t *testing.T, id string, theirs float64) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "the outcome write of the fenced copy dropped", func() bool { return b.book.dropped.Load() == 1 })
	info, err := b.insp.GetTaskInfo("default", id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateActive || info.Retried != 0 || info.LastErr != "" {
		t.Errorf("task after the fenced copy ended: state %v retried %d last error %q; want active, untouched (the other worker runs it)",
			info.State, info.Retried, info.LastErr)
	}
	if s, _ := b.r.Client.ZScore(context.Background(), keys.AsynqLease("default"), id).Result(); s != theirs {
		t.Errorf("lease = %v, want the other worker's %v untouched", s, theirs)
	}
}

// A worker whose job was taken over (found by its next heartbeat's lease
// extension) cancels its copy, does not extend the other's lease, and
// asynq's retry write of the cancelled copy never reaches Redis.
func TestLeaseTapFencesAJobTakenOver(t *testing.T) {
	t.Parallel()
	job := newBlockingJob()
	b := startFenced(t, time.Minute, nil, job.handle)
	id := b.enqueue(t)
	recv(t, job.started, 10*time.Second, "job started")
	testenv.Eventually(t, 5*time.Second, "lease booked from the dequeue reply", func() bool { _, ok := b.book.lease(id); return ok })
	theirs := takeOver(t, b.r.Client, id)
	took := time.Now()
	cause := recv(t, job.causes, 8*time.Second, "fenced copy cancelled by the next heartbeat")
	t.Logf("copy cancelled %.2fs after the takeover (heartbeat every 5s)", time.Since(took).Seconds())
	if !errors.Is(cause, ErrCutOff) {
		t.Fatalf("cause %v, want ErrCutOff", cause)
	}
	b.checkLeftAlone(t, id, theirs)
}

// A job that waited between its dequeue and its start (the process was
// paused) has its lease checked first; taken over meanwhile, it never runs.
func TestSelfFenceRechecksAJobDequeuedBeforeAPause(t *testing.T) {
	t.Parallel()
	job := newBlockingJob()
	paused := make(chan string, 1)
	resume := make(chan struct{})
	pause := func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			paused <- id
			<-resume // the process stopped between dequeue and start
			return next.ProcessTask(ctx, task)
		})
	}
	b := startFenced(t, time.Minute, pause, job.handle)
	id := b.enqueue(t)
	recv(t, paused, 10*time.Second, "job dequeued")
	theirs := takeOver(t, b.r.Client, id)
	time.Sleep(startRecheckAfter + 100*time.Millisecond)
	close(resume)
	select {
	case <-job.started:
		t.Fatal("the job ran although another worker holds its lease")
	case <-time.After(time.Second):
	}
	b.checkLeftAlone(t, id, theirs)
	if b.logs.Count("job not started") != 1 {
		t.Errorf("want one `job not started` line")
	}
}

// Redis out of memory refuses the heartbeat but answers reads: the worker
// counts as cut off and stops its job before another worker's recoverer
// could take it, writing nothing about it.
func TestSelfFenceStopsJobsWhenRedisRefusesTheHeartbeat(t *testing.T) {
	t.Parallel()
	job := newBlockingJob()
	b := startFenced(t, 2*time.Second, nil, job.handle)
	ctx := context.Background()
	id := b.enqueue(t)
	recv(t, job.started, 10*time.Second, "job started")
	if err := b.r.Client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	full := time.Now()
	if err := b.r.Client.Set(ctx, "probe", "x", 0).Err(); err == nil {
		t.Fatal("Redis still takes writes with maxmemory 1")
	}
	cause := recv(t, job.causes, 10*time.Second, "job stopped while Redis refuses writes")
	t.Logf("job stopped %.2fs after Redis began refusing writes (limit 2s, heartbeat every 5s)", time.Since(full).Seconds())
	if !errors.Is(cause, ErrCutOff) {
		t.Fatalf("cause %v, want ErrCutOff", cause)
	}
	testenv.Eventually(t, 5*time.Second, "outcome write dropped", func() bool { return b.book.dropped.Load() == 1 })
	if err := b.r.Client.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if info, err := b.insp.GetTaskInfo("default", id); err != nil || info.State != asynq.TaskStateActive || info.Retried != 0 {
		t.Errorf("task: %+v, %v; want active and not retried (the recoverer hands it back once its lease is stale)", info, err)
	}
	if b.logs.Count("refuses this worker's heartbeat") != 1 {
		t.Errorf("want one log line for the state change")
	}
}

// A stall of Redis itself (every client paused) longer than the fence's
// limit does not stop a running job: its lease is still this worker's.
func TestSelfFenceHoldsJobsThroughARedisWideStall(t *testing.T) {
	t.Parallel()
	job := newBlockingJob()
	b := startFenced(t, time.Second, nil, job.handle)
	ctx := context.Background()
	id := b.enqueue(t)
	recv(t, job.started, 10*time.Second, "job started")
	testenv.Eventually(t, 5*time.Second, "lease booked", func() bool { _, ok := b.book.lease(id); return ok })
	if err := b.r.Client.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-job.causes:
		t.Fatalf("job stopped during a Redis-wide stall: %v", c)
	case <-time.After(5 * time.Second):
	}
	testenv.Eventually(t, 5*time.Second, "the fence saw the stall and Redis again", func() bool {
		return b.logs.Count("worker cut off from Redis") == 1 && b.logs.Count("reaches Redis again") == 1
	})
	close(job.release)
	if c := recv(t, job.causes, 5*time.Second, "job finished"); c != nil {
		t.Fatalf("job ended by %v", c)
	}
	testenv.Eventually(t, 5*time.Second, "task done", func() bool {
		_, err := b.insp.GetTaskInfo("default", id)
		return errors.Is(err, asynq.ErrTaskNotFound)
	})
	if n := b.book.dropped.Load(); n != 0 {
		t.Errorf("%d writes dropped; want none", n)
	}
}

// The recoverer never hands back a job this worker runs, whatever its
// heartbeat wrote (Redis out of memory refuses the heartbeat first).
func TestRecovererLeavesItsOwnRunningJobs(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(r.Client)
	now, err := r.Client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	mine := activeTask(t, ctx, r.Client, c, now.Unix()+15) // stale lease, no workers hash: looks dead
	dead := activeTask(t, ctx, r.Client, c, now.Unix()+15)
	counter, _ := recoveredCounter(nil)
	f := newSelfFence(time.Minute, nil, nil)
	f.running[mine] = &runningJob{queue: "default", cancel: func(error) {}}
	rec := &recoverer{rdb: r.Client, queues: []string{"default"}, staleAfter: 10 * time.Second,
		logger: slog.New(slog.DiscardHandler), requeued: counter, fence: f}
	if err := rec.pass(ctx); err != nil {
		t.Fatal(err)
	}
	pending, _ := r.Client.LRange(ctx, keys.AsynqPending("default"), 0, -1).Result()
	if len(pending) != 1 || pending[0] != dead {
		t.Fatalf("pending = %v, want only the dead worker's job %s (not this worker's running %s)", pending, dead, mine)
	}
}
