package inbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func invalidateJob(id int, opts ...tasks.Option) inbox.BatchJob {
	return inbox.BatchJob{Payload: &tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{strconv.Itoa(id)}}, Options: opts}
}

// TestBatchEnqueueReliesOnAsynq fails when asynq stops behaving as the
// batched enqueue relies on (see batchenqueue.go): the jobs it sends are
// asynq's own tasks (read back by the Inspector, run by a real asynq
// server), duplicates by task id are reported, and a queue never seen
// before is registered.
func TestBatchEnqueueReliesOnAsynq(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const queue = "never_seen_before"
	// a task that exists before the batch: its id comes back a duplicate
	if _, err := b.client.Enqueue(ctx, &tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{"0"}}, tasks.Queue(queue), tasks.TaskID("t-0")); err != nil {
		t.Fatal(err)
	}
	jobs := []inbox.BatchJob{invalidateJob(0, tasks.Queue(queue), tasks.TaskID("t-0"))}
	for i := 1; i <= 20; i++ {
		jobs = append(jobs, invalidateJob(i, tasks.Queue(queue), tasks.TaskID(fmt.Sprintf("t-%d", i)), tasks.MaxRetry(7), tasks.Retention(time.Hour)))
	}
	jobs = append(jobs,
		invalidateJob(5, tasks.Queue(queue), tasks.TaskID("t-5")),                                                  // a duplicate within the batch
		inbox.BatchJob{Payload: &tasks.InvalidateArgs{Cache: "user"}, Options: []tasks.Option{tasks.Queue(queue)}}, // invalid: no ids
	)
	errs := b.batch.EnqueueBatch(ctx, jobs)
	for i, err := range errs {
		switch i {
		case 0, 21:
			if !errors.Is(err, tasks.ErrDuplicateTask) {
				t.Errorf("job %d: %v, want a duplicate", i, err)
			}
		case 22:
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Errorf("job %d: %v, want an invalid payload", i, err)
			}
		default:
			if err != nil {
				t.Errorf("job %d: %v", i, err)
			}
		}
	}
	if why := b.batch.Broken(); why != "" {
		t.Fatalf("batching disabled: %s", why)
	}
	queues, err := b.inspect.Queues()
	if err != nil || !slices.Contains(queues, queue) {
		t.Fatalf("asynq's queues %v (%v), want %s registered", queues, err, queue)
	}
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("t-%d", i)
		ti, err := b.inspect.GetTaskInfo(queue, id)
		if err != nil {
			t.Fatalf("GetTaskInfo(%s): %v", id, err)
		}
		var a tasks.InvalidateArgs
		if ti.ID != id || ti.Queue != queue || ti.Type != tasks.KindInvalidate || ti.State != asynq.TaskStatePending ||
			ti.MaxRetry != 7 || ti.Retention != time.Hour || json.Unmarshal(ti.Payload, &a) != nil || a.IDs[0] != strconv.Itoa(i) {
			t.Errorf("task %s: %+v (payload %s)", id, ti, ti.Payload)
		}
		if ti.Headers[tasks.HeaderEnqueuedAt] == "" {
			t.Errorf("task %s: no %s header (tasks.NewTask's)", id, tasks.HeaderEnqueuedAt)
		}
	}
	if qi, err := b.inspect.GetQueueInfo(queue); err != nil || qi.Pending != 21 {
		t.Fatalf("queue %s: %+v (%v), want 21 pending (20 + the one before)", queue, qi, err)
	}

	// A real asynq server runs them.
	var mu sync.Mutex
	seen := map[string]int{}
	srv := asynq.NewServerFromRedisClient(b.r.Client, asynq.Config{
		Concurrency: 4, Queues: map[string]int{queue: 1},
		TaskCheckInterval: 10 * time.Millisecond, Logger: nopAsynqLogger{}, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		var a tasks.InvalidateArgs
		if err := json.Unmarshal(task.Payload(), &a); err != nil {
			return err
		}
		mu.Lock()
		seen[a.IDs[0]]++
		mu.Unlock()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	want := map[string]int{}
	for i := 0; i <= 20; i++ {
		want[strconv.Itoa(i)] = 1
	}
	waitFor(t, "the asynq server ran every task", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(seen, want) {
		t.Errorf("handler saw %v, want each id once: %v", seen, want)
	}
}

// TestBatchEnqueueAfterScriptFlush: Redis lost asynq's enqueue script
// between batches (SCRIPT FLUSH, a restart, a failover); the replay loads it
// and sends the NOSCRIPT-answered commands again: every job is enqueued.
func TestBatchEnqueueAfterScriptFlush(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		if err := b.r.Client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		jobs := make([]inbox.BatchJob, 100)
		for i := range jobs {
			jobs[i] = invalidateJob(round*100 + i)
		}
		for i, err := range b.batch.EnqueueBatch(ctx, jobs) {
			if err != nil {
				t.Fatalf("round %d, job %d: %v", round, i, err)
			}
		}
	}
	if n := b.pending(t); n != 300 {
		t.Fatalf("%d pending, want 300", n)
	}
	// Rounds 2 and 3 met NOSCRIPT (round 1 sent EVAL with the source).
	info := b.r.Client.Info(ctx, "errorstats").Val()
	if !strings.Contains(info, "errorstat_NOSCRIPT:count=") {
		t.Errorf("no NOSCRIPT reply seen by Redis: the test did not reach the reload (errorstats: %q)", info)
	}
}

// TestBatchEnqueueGivesBackWhatItDoesNotKnow: a job asynq enqueues with
// other commands (a delayed one runs asynq's schedule script) is given back
// and batching turns off, instead of sending what it does not understand.
func TestBatchEnqueueGivesBackWhatItDoesNotKnow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	errs := b.batch.EnqueueBatch(context.Background(), []inbox.BatchJob{invalidateJob(1, tasks.ProcessIn(time.Hour))})
	if !errors.Is(errs[0], inbox.ErrNotBatched) || b.batch.Broken() == "" {
		t.Fatalf("delayed job: %v (broken %q), want ErrNotBatched and batching off", errs[0], b.batch.Broken())
	}
	if n := len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStateScheduled)); n != 0 {
		t.Fatalf("%d scheduled tasks: the recorded commands were sent", n)
	}
	if errs := b.batch.EnqueueBatch(context.Background(), []inbox.BatchJob{invalidateJob(2)}); !errors.Is(errs[0], inbox.ErrNotBatched) {
		t.Fatalf("after: %v, want ErrNotBatched", errs[0])
	}
}

// countingBatcher counts the jobs given to the batched enqueue, and
// countingEnqueuer the plain enqueues.
type countingBatcher struct {
	inbox.Batcher
	jobs, calls atomic.Int64
}

func (c *countingBatcher) EnqueueBatch(ctx context.Context, jobs []inbox.BatchJob) []error {
	c.calls.Add(1)
	c.jobs.Add(int64(len(jobs)))
	return c.Batcher.EnqueueBatch(ctx, jobs)
}

type countingEnqueuer struct {
	*tasks.Client
	n atomic.Int64
}

func (c *countingEnqueuer) Enqueue(ctx context.Context, p tasks.Payload, opts ...tasks.Option) (*asynq.TaskInfo, error) {
	c.n.Add(1)
	return c.Client.Enqueue(ctx, p, opts...)
}

// givingBack is a Batcher whose every job is given back.
type givingBack struct{}

func (givingBack) EnqueueBatch(_ context.Context, jobs []inbox.BatchJob) []error {
	errs := make([]error, len(jobs))
	for i := range errs {
		errs[i] = inbox.ErrNotBatched
	}
	return errs
}

// TestBridgeBatchedPath: entries of a batch that are neither delayed nor
// coalesced take the batched enqueue, the others the plain one; with a
// Batcher that gives everything back, every entry still goes through.
func TestBridgeBatchedPath(t *testing.T) {
	t.Parallel()
	for _, giveBack := range []bool{false, true} {
		t.Run(fmt.Sprintf("give back %v", giveBack), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			const n = 250
			for i := 0; i < n; i++ {
				b.push(t, fmt.Sprintf(`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [%d]}, "options": {"max_retry": 3}}`, i))
			}
			b.push(t,
				`{"kind": "notify:publish", "args": {"channel": "c", "message": "m"}, "options": {"process_in": "1h"}}`,
				`{"kind": "cache:warm", "args": {"cache": "user", "ids": [9]}}`,
				`{"kind": "cache:nuke", "args": {}}`,
				`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"task_id": "mine"}}`,
				`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"task_id": "mine"}}`,
			)
			cfg := b.config()
			batcher := &countingBatcher{Batcher: b.batch}
			if giveBack {
				batcher.Batcher = givingBack{}
			}
			plain := &countingEnqueuer{Client: b.client}
			cfg.Batch, cfg.Enqueuer = batcher, plain
			var mu sync.Mutex
			outcomes := map[string]int{}
			cfg.OnOutcome = func(o string) { mu.Lock(); outcomes[o]++; mu.Unlock() }
			run(t, cfg)
			waitFor(t, "every entry handled", func() bool {
				return b.listLen(inboxKey) == 0 && b.listLen(processingKey) == 0 && b.pending(t) == n+1
			})
			if s := len(b.tasksIn(t, tasks.QueueDefault, asynq.TaskStateScheduled)); s != 1 || b.listLen(deadKey) != 1 {
				t.Errorf("%d scheduled, %d dead letters; want 1 and 1", s, b.listLen(deadKey))
			}
			mu.Lock()
			want := map[string]int{inbox.OutcomeEnqueued: n + 2, inbox.OutcomeDuplicate: 1, inbox.OutcomeCoalesced: 1, inbox.OutcomeDeadLettered: 1}
			if !maps.Equal(outcomes, want) {
				t.Errorf("outcomes %v, want %v", outcomes, want)
			}
			mu.Unlock()
			if giveBack {
				if plain.n.Load() != n+3 {
					t.Errorf("%d plain enqueues, want %d (all but the coalesced and the invalid)", plain.n.Load(), n+3)
				}
				return
			}
			// everything but the delayed, the coalesced and the invalid entry
			if batcher.jobs.Load() != n+2 || plain.n.Load() != 1 {
				t.Errorf("%d jobs batched in %d calls, %d plain enqueues; want %d batched, 1 plain", batcher.jobs.Load(), batcher.calls.Load(), plain.n.Load(), n+2)
			}
			t.Logf("%d jobs batched in %d calls", batcher.jobs.Load(), batcher.calls.Load())
		})
	}
}

type nopAsynqLogger struct{}

func (nopAsynqLogger) Debug(...any) {}
func (nopAsynqLogger) Info(...any)  {}
func (nopAsynqLogger) Warn(...any)  {}
func (nopAsynqLogger) Error(...any) {}
func (nopAsynqLogger) Fatal(...any) {}
