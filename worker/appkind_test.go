package worker_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// shoutArgs is a kind of the application's own, declared by its type.
type shoutArgs struct {
	Word  string `json:"word"`
	Times int    `json:"times,omitempty"`
}

func (shoutArgs) Kind() string { return "test:shout" }

func (a shoutArgs) Validate() error {
	if a.Word == "" {
		return &tasks.FieldError{Kind: "test:shout", Field: "word", Msg: "must not be empty"}
	}
	return nil
}

func (shoutArgs) KindDefaults() tasks.KindDefaults {
	return tasks.KindDefaults{Queue: "shout", MaxRetry: 2, Timeout: 10 * time.Second}
}

// startWorker runs a worker on r with opts until the test ends.
func startWorker(t *testing.T, r *testenv.Redis, edit func(*config.Config), opts ...worker.Option) (*worker.Worker, *prometheus.Registry) {
	t.Helper()
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	cfg.Inbox.Disabled = true
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: tasks.NewClientFromRedis(r.Client), Registry: reg},
		slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop within 10s")
		}
	})
	waitFor(t, 5*time.Second, w.Ready)
	return w, reg
}

// A declared kind is enqueued by the typed client with its defaults, run by
// the worker that registered it behind the same adapter (a bad payload is
// archived at once) and middleware (metrics by kind), and recorded in Redis
// with its payload's shape.
func TestDeclaredKind(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	var mu sync.Mutex
	var got []string
	handler := worker.WithKind(func(ctx context.Context, job *worker.Job[shoutArgs]) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, strings.Repeat(job.Args.Word, max(1, job.Args.Times)))
		return nil
	})
	w, reg := startWorker(t, r, nil, handler)
	if !slices.Contains(w.Kinds(), "test:shout") {
		t.Fatalf("kinds %v", w.Kinds())
	}
	client := tasks.NewClientFromRedis(r.Client, tasks.WithQueues("critical", "default", "low"))
	info, err := client.Enqueue(ctx, &shoutArgs{Word: "hey", Times: 2})
	if err != nil {
		t.Fatal(err)
	}
	if info.Queue != "shout" || info.MaxRetry != 2 || info.Timeout != 10*time.Second {
		t.Fatalf("enqueued with %s/%d/%s, want the kind's defaults shout/2/10s", info.Queue, info.MaxRetry, info.Timeout)
	}
	if _, err := client.Enqueue(ctx, &shoutArgs{}); err == nil || !strings.Contains(err.Error(), `"word"`) {
		t.Fatalf("an invalid payload was accepted: %v", err)
	}
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	if got[0] != "heyhey" {
		t.Fatalf("handler got %q", got)
	}
	// A producer that skipped validation: archived at once, naming the field.
	raw := asynq.NewClientFromRedisClient(r.Client)
	bad, err := raw.EnqueueContext(ctx, asynq.NewTask("test:shout", []byte(`{"word":"x","loud":true}`)), asynq.Queue("shout"), asynq.MaxRetry(5))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	var ti *asynq.TaskInfo
	waitFor(t, 5*time.Second, func() bool {
		ti, err = insp.GetTaskInfo("shout", bad.ID)
		return err == nil && ti.State == asynq.TaskStateArchived
	})
	if ti.Retried != 0 || !strings.Contains(ti.LastErr, `"loud"`) {
		t.Fatalf("bad payload: retried %d, error %q", ti.Retried, ti.LastErr)
	}
	if v := testutil.ToFloat64(counter(t, reg, "test:shout", worker.OutcomeSuccess)); v != 1 {
		t.Fatalf("success count of test:shout = %v", v)
	}
	if v := testutil.ToFloat64(counter(t, reg, "test:shout", worker.OutcomeInvalid)); v != 1 {
		t.Fatalf("invalid count of test:shout = %v", v)
	}
	spec, ok, err := catalog.Lookup(ctx, r.Client, keys.Default(), "test:shout")
	if err != nil || !ok {
		t.Fatalf("kind not recorded: %v %v", ok, err)
	}
	want := []tasks.FieldSpec{{Name: "times", Type: "integer"}, {Name: "word", Type: "string", Required: true}}
	if spec.Queue != "shout" || spec.MaxRetry != 2 || !slices.Equal(spec.Fields, want) {
		t.Fatalf("recorded spec %+v", spec)
	}
	if ttl := r.Client.TTL(ctx, keys.Default().KindSpec("test:shout")).Val(); ttl <= 0 || ttl > catalog.DefaultTTL {
		t.Fatalf("spec TTL %s; want at most %s", ttl, catalog.DefaultTTL)
	}
	t.Logf("recorded: %+v", spec)
}

// In a mixed fleet, a worker without the kind's handler never runs its job:
// the job waits, visible, its retries untouched, until a worker that
// handles the kind takes it.
func TestJobWaitsForAWorkerWithItsHandler(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	// The job is sent on a queue every worker serves.
	client := tasks.NewClientFromRedis(r.Client)
	info, err := client.Enqueue(ctx, &shoutArgs{Word: "hi"}, tasks.Queue("default"), tasks.MaxRetry(1))
	if err != nil {
		t.Fatal(err)
	}
	fast := func(c *config.Config) { c.Worker.DelayedTaskCheckInterval = 100 * time.Millisecond }
	startWorker(t, r, fast) // no handler for test:shout
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	var ti *asynq.TaskInfo
	waitFor(t, 5*time.Second, func() bool {
		ti, err = insp.GetTaskInfo("default", info.ID)
		return err == nil && strings.Contains(ti.LastErr, "no handler")
	})
	// Offered again after NoHandlerDelay: still not run, still no retry spent.
	time.Sleep(2*worker.NoHandlerDelay + time.Second)
	ti, err = insp.GetTaskInfo("default", info.ID)
	if err != nil || ti.Retried != 0 || ti.State == asynq.TaskStateArchived || ti.State == asynq.TaskStateCompleted {
		t.Fatalf("job on a worker without its handler: %+v, %v; want waiting, 0 retries", ti, err)
	}
	t.Logf("waiting as %s: %s", ti.State, ti.LastErr)

	ran := make(chan string, 1)
	start := time.Now()
	startWorker(t, r, fast, worker.WithKind(func(ctx context.Context, job *worker.Job[shoutArgs]) error {
		ran <- job.ID
		return nil
	}))
	select {
	case id := <-ran:
		if id != info.ID {
			t.Fatalf("ran %s, want %s", id, info.ID)
		}
		t.Logf("run by the worker with the handler %s after it started", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("the worker with the handler did not run the job within 30s")
	}
}
