package worker_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

const laneKind = "test:lane"

// laneRecorder is a handler that records the queue of every job it runs.
type laneRecorder struct {
	mu   sync.Mutex
	runs map[string]int // by queue
	ch   chan string
}

func newLaneRecorder() *laneRecorder {
	return &laneRecorder{runs: map[string]int{}, ch: make(chan string, 100)}
}

func (r *laneRecorder) ProcessTask(ctx context.Context, _ *asynq.Task) error {
	q, _ := asynq.GetQueueName(ctx)
	r.mu.Lock()
	r.runs[q]++
	r.mu.Unlock()
	select {
	case r.ch <- q:
	default:
	}
	return nil
}

func (r *laneRecorder) count(q string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[q]
}

// laneSetup starts a worker on a private Redis with cfg adjusted by adjust and
// a recorder for laneKind; it returns the recorder, an asynq client, the
// Redis and a function that stops the worker and returns how long Run took
// to return.
func laneSetup(t *testing.T, adjust func(*config.Config)) (*laneRecorder, *asynq.Client, *testenv.Redis, func() time.Duration) {
	t.Helper()
	return laneSetupOn(t, testenv.NewRedis(t), adjust)
}

func laneSetupOn(t *testing.T, r *testenv.Redis, adjust func(*config.Config)) (*laneRecorder, *asynq.Client, *testenv.Redis, func() time.Duration) {
	t.Helper()
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	adjust(&cfg)
	rec := newLaneRecorder()
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Registry: prometheus.NewRegistry()},
		slog.New(slog.NewTextHandler(io.Discard, nil)), worker.WithHandler(laneKind, rec))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var took time.Duration
	stop := func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker.Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("worker did not stop within 20s")
			}
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	waitFor(t, 5*time.Second, w.Ready)
	client := asynq.NewClientFromRedisClient(r.Client)
	return rec, client, r, stop
}

func enqueueLane(t *testing.T, c *asynq.Client, queue string) {
	t.Helper()
	if _, err := c.Enqueue(asynq.NewTask(laneKind, nil), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
}

// The lane picks critical jobs up though every server polls an empty queue
// only every 3 to 9 s (TaskCheckInterval 6s): only its blocking wait can have
// seen them within 2.5 s. (A longer interval would slow the test's shutdown:
// asynq's processor sleeps it out before stopping.)
func TestFastLanePicksUpWithoutPolling(t *testing.T) {
	t.Parallel()
	rec, client, _, _ := laneSetup(t, func(cfg *config.Config) {
		cfg.Worker.TaskCheckInterval = 6 * time.Second
		cfg.Worker.FastLane.TaskCheckInterval = 6 * time.Second
		cfg.Worker.FastLane.Wait = 10 * time.Second
	})
	// Every server has made its first, empty, dequeue and is now asleep (the
	// main server) or waiting (the lane) once this has passed.
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		enqueueLane(t, client, "critical")
		select {
		case q := <-rec.ch:
			if q != "critical" {
				t.Fatalf("ran a job of queue %q", q)
			}
		case <-time.After(2500 * time.Millisecond):
			t.Fatalf("critical job %d not picked up within 2.5s: the fast lane did not wake", i+1)
		}
	}
}

// The lane also works on miniredis, the embedded Redis of `cachekeeper dev`.
func TestFastLaneOnMiniredis(t *testing.T) {
	t.Parallel()
	rec, client, _, _ := laneSetupOn(t, testenv.NewMiniredis(t), func(cfg *config.Config) {
		cfg.Worker.TaskCheckInterval = 6 * time.Second
		cfg.Worker.FastLane.TaskCheckInterval = 6 * time.Second
		cfg.Worker.FastLane.Wait = 10 * time.Second
	})
	time.Sleep(300 * time.Millisecond) // every server past its first, empty, dequeue
	enqueueLane(t, client, "critical")
	select {
	case <-rec.ch:
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("critical job not picked up within 2.5s on miniredis")
	}
}

// Every queue is still served, by weight, by the main servers; the lane only
// adds capacity to critical.
func TestFastLaneKeepsEveryQueueServed(t *testing.T) {
	t.Parallel()
	rec, client, _, _ := laneSetup(t, func(cfg *config.Config) {})
	for i := 0; i < 20; i++ {
		for _, q := range []string{"critical", "default", "low"} {
			enqueueLane(t, client, q)
		}
	}
	waitFor(t, 20*time.Second, func() bool {
		return rec.count("critical") == 20 && rec.count("default") == 20 && rec.count("low") == 20
	})
}

// Stopping the worker ends the lane's wait at once instead of after Wait.
func TestFastLaneStopsWithoutWaitingOut(t *testing.T) {
	t.Parallel()
	_, _, _, stop := laneSetup(t, func(cfg *config.Config) {
		cfg.Worker.FastLane.Wait = 10 * time.Second
	})
	time.Sleep(300 * time.Millisecond) // let the lane start its wait
	if took := stop(); took > 5*time.Second {
		t.Fatalf("worker took %s to stop; the lane's 10s wait was not cut short", took)
	}
}

// While its queue is paused with jobs pending, the lane neither runs them nor
// spins on Redis (BLMOVE returns at once on a non-empty list).
func TestFastLanePausedQueueDoesNotSpin(t *testing.T) {
	t.Parallel()
	rec, client, r, _ := laneSetup(t, func(cfg *config.Config) {
		cfg.Worker.TaskCheckInterval = 2 * time.Second
		cfg.Worker.FastLane.Wait = 200 * time.Millisecond
	})
	if !r.Real {
		t.Skip("needs a real redis-server for INFO commandstats")
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	if err := insp.PauseQueue("critical"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		enqueueLane(t, client, "critical")
	}
	before := evalCalls(t, r)
	time.Sleep(time.Second)
	calls := evalCalls(t, r) - before
	// Spinning would be a dequeue every TaskCheckInterval (5ms): about 200 a
	// second; the lane waits Wait (200ms) between tries (about 5), and the
	// main server polls every 1 to 3 s.
	if calls > 60 {
		t.Fatalf("%d dequeue scripts in 1s on a paused queue: the lane spins", calls)
	}
	if n := rec.count("critical"); n != 0 {
		t.Fatalf("%d jobs of a paused queue ran", n)
	}
	if err := insp.UnpauseQueue("critical"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return rec.count("critical") == 3 })
}

// evalCalls returns how many EVALSHA and EVAL commands Redis has run.
func evalCalls(t *testing.T, r *testenv.Redis) int {
	t.Helper()
	text, err := r.Client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		total += n
	}
	return total
}

// The lane's blocking peek (BLMOVE of a list onto itself, tail to tail)
// leaves the pending list exactly as it was: asynq's FIFO order holds.
func TestBlockingPeekKeepsOrder(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	key := "asynq:{q}:pending"
	if err := r.Client.LPush(ctx, key, "a", "b", "c").Err(); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Client.LRange(ctx, key, 0, -1).Result()
	if err := r.Client.BLMove(ctx, key, key, "RIGHT", "RIGHT", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	after, _ := r.Client.LRange(ctx, key, 0, -1).Result()
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("list changed from %v to %v", before, after)
	}
}

func TestWithHandlerRejectsBadKinds(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	cfg := config.Default()
	cfg.Redis = r.Config
	noop := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
	for _, tc := range []struct {
		kind string
		want string
	}{
		{"", "kind is empty"},
		{tasks.KindNotifyPublish, "already handles"},
	} {
		_, err := worker.New(cfg, worker.Deps{Redis: r.Client}, nil, worker.WithHandler(tc.kind, noop))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithHandler(%q): err = %v, want %q", tc.kind, err, tc.want)
		}
	}
}

// A busy server does not ask Redis again for a job from a queue it has just
// found empty: with jobs on one of two queues, the dequeue scripts are about
// one per job instead of one and a half.
func TestEmptyQueueSkip(t *testing.T) {
	t.Parallel()
	const jobs = 400
	for _, tc := range []struct {
		backoff time.Duration
		check   func(extra int) bool
		want    string
	}{
		{0, func(extra int) bool { return extra > jobs/4 }, "about jobs/2 (control: asynq probes the empty queue first half the time)"},
		{time.Second, func(extra int) bool { return extra < 40 }, "a handful"},
	} {
		t.Run(tc.backoff.String(), func(t *testing.T) {
			t.Parallel()
			testEmptyQueueSkip(t, jobs, tc.backoff, tc.check, tc.want)
		})
	}
}

func testEmptyQueueSkip(t *testing.T, jobs int, backoff time.Duration, check func(int) bool, want string) {
	rec, client, r, _ := laneSetup(t, func(cfg *config.Config) {
		cfg.Worker.Queues = map[string]int{"busy": 1, "idle": 1}
		cfg.Worker.FastLane.Queue = ""
		cfg.Worker.Concurrency = 1
		cfg.Worker.TaskCheckInterval = 2 * time.Second // backoff capped at 1s
		cfg.Worker.EmptyQueueBackoff = backoff
		// Background scripts (forwarder, dead-job recovery) are not what is counted.
		cfg.Worker.DelayedTaskCheckInterval = time.Minute
		cfg.Worker.RecoverAfter = 0
	})
	if !r.Real {
		t.Skip("needs a real redis-server for INFO commandstats")
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	if err := insp.PauseQueue("busy"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < jobs; i++ {
		enqueueLane(t, client, "busy")
	}
	time.Sleep(100 * time.Millisecond) // the server is asleep on two empty-looking queues
	before := evalCalls(t, r)
	if err := insp.UnpauseQueue("busy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return rec.count("busy") == jobs })
	// Each job costs one dequeue and one done script; the rest are probes
	// of the idle queue (and a few heartbeats).
	extra := evalCalls(t, r) - before - 2*jobs
	t.Logf("backoff %s: %d extra scripts for %d jobs", backoff, extra, jobs)
	if !check(extra) {
		t.Errorf("backoff %s: %d extra scripts for %d jobs, want %s", backoff, extra, jobs, want)
	}
}
