package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

type bundle struct {
	redis   *testenv.Redis
	cfg     config.Config
	client  *tasks.Client
	worker  *worker.Worker
	reg     *prometheus.Registry
	inspect *asynq.Inspector
}

// setup starts a private Redis and a running worker with fast polling.
func setup(t *testing.T) *bundle {
	t.Helper()
	r := testenv.NewRedis(t)
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	reg := prometheus.NewRegistry()
	client := tasks.NewClientFromRedis(r.Client)
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: client, Registry: reg}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
	opt, _ := cfg.Redis.ConnOpt()
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	waitFor(t, 5*time.Second, w.Ready)
	return &bundle{redis: r, cfg: cfg, client: client, worker: w, reg: reg, inspect: insp}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotifyPublishes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sub := b.redis.Client.Subscribe(ctx, "orders")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Publish(ctx, "orders", "shipped 42"); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-sub.Channel():
		if msg.Payload != "shipped 42" {
			t.Fatalf("payload = %q", msg.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message published within 5s")
	}
	waitFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(counter(t, b.reg, tasks.KindNotifyPublish, worker.OutcomeSuccess)) == 1
	})
}

func TestNotifyLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	info, err := b.client.Publish(ctx, "later", "hi", tasks.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateScheduled {
		t.Fatalf("state = %v, want scheduled", info.State)
	}
}

func TestBadPayloadIsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// A producer that skipped validation: channel missing, unknown field.
	raw := asynq.NewClientFromRedisClient(b.redis.Client)
	info, err := raw.EnqueueContext(ctx, asynq.NewTask(tasks.KindNotifyPublish, []byte(`{"chanel":"x","message":"m"}`)), asynq.Queue("default"), asynq.MaxRetry(5))
	if err != nil {
		t.Fatal(err)
	}
	var got *asynq.TaskInfo
	waitFor(t, 5*time.Second, func() bool {
		got, err = b.inspect.GetTaskInfo("default", info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	})
	if got.Retried != 0 {
		t.Errorf("retried %d times, want 0 (bad payloads are not retried)", got.Retried)
	}
	if !strings.Contains(got.LastErr, `"chanel"`) {
		t.Errorf("last error %q does not name the field", got.LastErr)
	}
}

func TestClientRejectsInvalidArgsAndSendsNothing(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	client := tasks.NewClientFromRedis(r.Client)
	ctx := context.Background()
	_, err := client.Publish(ctx, "", "x")
	if !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("err = %v, want ErrInvalidPayload", err)
	}
	_, err = client.InvalidateCache(ctx, "user", 4.2)
	if !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("float id: err = %v", err)
	}
	n, err := r.Client.DBSize(ctx).Result()
	if err != nil || n != 0 {
		t.Fatalf("Redis has %d keys after rejected enqueues (err %v)", n, err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, kind, outcome string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "cachekeeper_tasks_processed_total" {
				continue
			}
			for _, m := range mf.Metric {
				labels := map[string]string{}
				for _, l := range m.Label {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["kind"] == kind && labels["outcome"] == outcome {
					return m.Counter.GetValue()
				}
			}
		}
		return 0
	})
}

type collectorFunc func() float64

func (f collectorFunc) Describe(ch chan<- *prometheus.Desc) {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.GaugeValue, f())
}

// An idle worker against a Redis that refuses every write (out of memory:
// asynq's dequeue script fails) backs off instead of retrying at once, says
// so in DequeueErr (the /readyz worker probe), and recovers when Redis does.
func TestIdleWorkerBacksOffWhileRedisRefusesWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	processed := func() float64 {
		info, err := b.redis.Client.Info(ctx, "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "total_commands_processed:"); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatal("no total_commands_processed in INFO stats")
		return 0
	}
	rate := func() float64 {
		n0, t0 := processed(), time.Now()
		time.Sleep(2 * time.Second)
		return (processed() - n0) / time.Since(t0).Seconds()
	}
	healthy := rate()
	if err := b.worker.DequeueErr(); err != nil {
		t.Fatalf("DequeueErr = %v on a healthy Redis", err)
	}
	if err := b.redis.Client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	// An idle worker waits on its queues (worker.idle_wait, 10s by default)
	// rather than polling them: it finds the refusal when that wait ends and
	// its servers poll, so within idle_wait plus a poll.
	noticed := time.Now()
	waitFor(t, 15*time.Second, func() bool { return b.worker.DequeueErr() != nil })
	t.Logf("the refusal was noticed after %s", time.Since(noticed).Round(time.Millisecond))
	time.Sleep(dequeueSettle)
	refused := rate()
	t.Logf("idle worker: %.0f commands/s with Redis healthy, %.0f/s while it refuses writes (%v)", healthy, refused, b.worker.DequeueErr())
	if refused > 300 {
		t.Errorf("%.0f commands/s against a Redis refusing writes; want at most 300", refused)
	}
	if err := b.redis.Client.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return b.worker.DequeueErr() == nil })
}

// dequeueSettle lets the backoff reach its ceiling before measuring.
const dequeueSettle = 1500 * time.Millisecond
