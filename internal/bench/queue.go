package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// NoopKind is the task kind the queue benchmarks enqueue. Only the
// benchmark's worker handles it (worker.WithHandler); production workers
// never register it.
const NoopKind = "bench:noop"

// ErrInvalidOptions wraps an option that is out of range; the message names
// the flag and the range.
var ErrInvalidOptions = errors.New("invalid benchmark option")

// QueueOptions configure the queue and pickup_latency scenarios.
type QueueOptions struct {
	// RedisURL is the Redis both sides use. Every queue the benchmark
	// touches has a fresh random name and is deleted afterwards, so a shared
	// server keeps its data; nothing is ever flushed.
	RedisURL string
	// Private says the benchmark started the server itself, so idle command
	// counts are exact rather than an upper bound, and Redis's CPU per task
	// is reported.
	Private bool
	// Tasks is the number of no-op tasks per side and round.
	Tasks int
	// Servers and Concurrency shape cachekeeper's worker; zero takes the
	// configuration's defaults. The baseline is one asynq server with the
	// same total concurrency.
	Servers, Concurrency int
	// Rounds alternates the two sides (baseline first in odd rounds) and
	// reports medians. Default 3.
	Rounds int
	// Samples is the number of single tasks sent one at a time for
	// cachekeeper's pickup latency (default 300); BaselineSamples the number
	// for asynq with default settings (default 60), whose pickups take about
	// a second each and are sampled on 10 queues in parallel.
	Samples, BaselineSamples int
	// IdleWindow is how long idle Redis commands are counted. Default 3s.
	IdleWindow time.Duration
	// SingleQueue gives cachekeeper's worker one queue, like the baseline,
	// instead of the default layout (critical, default and low by weight,
	// the fast lane on critical, the tasks on default).
	SingleQueue bool
	// Logger receives progress lines at info level.
	Logger *slog.Logger
	// WorkerLogger is the worker's logger (default: discard). Successful
	// tasks are logged at debug level, so at info level and above the
	// middleware writes nothing per task.
	WorkerLogger *slog.Logger
}

func (o *QueueOptions) withDefaults() (QueueOptions, error) {
	out := *o
	def := config.Default().Worker
	if out.Servers == 0 {
		out.Servers = def.Servers
	}
	if out.Concurrency == 0 {
		out.Concurrency = def.Concurrency
	}
	if out.Rounds == 0 {
		out.Rounds = 3
	}
	if out.Samples == 0 {
		out.Samples = 300
	}
	if out.BaselineSamples == 0 {
		out.BaselineSamples = 60
	}
	if out.IdleWindow == 0 {
		out.IdleWindow = 3 * time.Second
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.WorkerLogger == nil {
		out.WorkerLogger = slog.New(slog.DiscardHandler)
	}
	switch {
	case out.RedisURL == "":
		return out, fmt.Errorf("%w: no Redis: pass --redis-url or install redis-server", ErrInvalidOptions)
	case out.Tasks < 1:
		return out, fmt.Errorf("%w: --tasks must be at least 1, got %d", ErrInvalidOptions, out.Tasks)
	case out.Rounds < 1:
		return out, fmt.Errorf("%w: --rounds must be at least 1, got %d", ErrInvalidOptions, out.Rounds)
	case out.Samples < 1 || out.BaselineSamples < 1:
		return out, fmt.Errorf("%w: --samples and --baseline-samples must be at least 1, got %d and %d", ErrInvalidOptions, out.Samples, out.BaselineSamples)
	case out.IdleWindow < 100*time.Millisecond:
		return out, fmt.Errorf("%w: the idle window must be at least 100ms, got %s", ErrInvalidOptions, out.IdleWindow)
	}
	// The worker's own validation names the field when servers or
	// concurrency are out of range.
	cfg := out.workerConfig("check")
	if err := cfg.Validate(); err != nil {
		return out, err
	}
	return out, nil
}

// workerConfig is the default configuration with the benchmark's Redis,
// sizes, and queues renamed under prefix (critical, default and low with
// their default weights; the fast lane on prefix+"critical"). Every key the
// worker's other parts use (inbox, events) moves under prefix as well, so
// that a benchmark on a shared server touches nothing of the application's.
func (o *QueueOptions) workerConfig(prefix string) config.Config {
	cfg := config.Default()
	cfg.KeyPrefix = strings.TrimSuffix(prefix, "-") + ":"
	cfg.Inbox.Key = cfg.KeyPrefix + "inbox"
	cfg.Events.Channel = cfg.KeyPrefix + "events"
	cfg.Redis = config.RedisConfig{URL: o.RedisURL}
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = o.Servers
	cfg.Worker.Concurrency = o.Concurrency
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	queues := map[string]int{}
	for q, weight := range cfg.Worker.Queues {
		queues[prefix+q] = weight
	}
	cfg.Worker.Queues = queues
	if cfg.Worker.FastLane.Queue != "" {
		cfg.Worker.FastLane.Queue = prefix + cfg.Worker.FastLane.Queue
	}
	return cfg
}

// newPrefix returns a fresh queue-name prefix such as "ckbench-1a2b3c4d-".
func newPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "ckbench-" + hex.EncodeToString(b[:]) + "-"
}

// Queue runs the queue scenario: N no-op tasks enqueued then processed, by
// cachekeeper's worker (its real runtime: several servers, the fast lane,
// middleware, metrics) and by one bare asynq server without middleware, in
// alternating rounds on the same Redis.
func Queue(ctx context.Context, o QueueOptions) (Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	env, err := newQueueEnv(ctx, o)
	if err != nil {
		return Result{}, err
	}
	defer env.close()

	var ours, base, oursEnq, baseEnq, ratios []float64
	var oursDone, baseDone int64
	var oursCPU, baseCPU []float64
	for round := 1; round <= o.Rounds; round++ {
		sides := []func(context.Context) (side, error){env.runBaseline, env.runOurs}
		if round%2 == 0 {
			slices.Reverse(sides)
		}
		var got [2]side
		for _, run := range sides {
			s, err := run(ctx)
			if err != nil {
				return Result{}, err
			}
			got[s.index] = s
		}
		b, c := got[0], got[1]
		o.Logger.Info("bench queue round", slog.Int("round", round),
			slog.Int("cachekeeper_per_s", int(c.procPerS)), slog.Int("baseline_per_s", int(b.procPerS)))
		ours, base = append(ours, c.procPerS), append(base, b.procPerS)
		oursEnq, baseEnq = append(oursEnq, c.enqPerS), append(baseEnq, b.enqPerS)
		ratios = append(ratios, c.procPerS/b.procPerS)
		oursDone, baseDone = oursDone+c.processed, baseDone+b.processed
		oursCPU, baseCPU = append(oursCPU, c.cpuPerTask), append(baseCPU, b.cpuPerTask)
	}
	r := NewResult("queue", "asynq v0.26, 1 server, no middleware", median(ours), median(base))
	r.Extra = map[string]any{
		"tasks":                  o.Tasks,
		"rounds":                 o.Rounds,
		"servers":                o.Servers,
		"queues":                 queueLayout(o.SingleQueue),
		"concurrency":            o.Concurrency,
		"enqueue_per_s":          round(median(oursEnq)),
		"baseline_enqueue_per_s": round(median(baseEnq)),
		"ratio_min":              roundTo(slices.Min(ratios), 2),
		"ratio_max":              roundTo(slices.Max(ratios), 2),
		"processed":              oursDone,
		"baseline_processed":     baseDone,
	}
	if o.Private {
		// Robust to a noisy machine where rates are not: CPU per task of
		// this process and Redis together, medians.
		r.Extra["cpu_us_per_task"] = roundTo(median(oursCPU), 1)
		r.Extra["baseline_cpu_us_per_task"] = roundTo(median(baseCPU), 1)
	}
	return r, nil
}

// queueEnv is what both sides of the queue scenario share.
type queueEnv struct {
	o       QueueOptions
	connOpt asynq.RedisConnOpt
	rdb     redis.UniversalClient
	client  *asynq.Client
	insp    *asynq.Inspector
	prefix  string   // starts every queue name of this run
	seq     int      // numbers the run's queue layouts
	queues  []string // every queue used, deleted by close
}

func newQueueEnv(ctx context.Context, o QueueOptions) (*queueEnv, error) {
	cfg := config.RedisConfig{URL: o.RedisURL}
	connOpt, err := cfg.ConnOpt()
	if err != nil {
		return nil, err
	}
	rdb, err := cfg.NewClient()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s is unreachable: %w", config.RedactURL(o.RedisURL), err)
	}
	return &queueEnv{o: o, connOpt: connOpt, rdb: rdb, client: asynq.NewClientFromRedisClient(rdb),
		insp: asynq.NewInspectorFromRedisClient(rdb), prefix: newPrefix()}, nil
}

// layout returns a fresh queue-name prefix within the run's prefix.
func (e *queueEnv) layout() string {
	e.seq++
	return e.prefix + strconv.Itoa(e.seq) + "-"
}

// close deletes every queue the benchmark created and asynq's counters of
// them (keys asynq:{<run prefix>...}), and nothing else.
func (e *queueEnv) close() {
	for _, q := range e.queues {
		_ = e.insp.DeleteQueue(q, true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pattern := range []string{"asynq:{" + e.prefix + "*", e.prefix + "*", "{" + e.prefix + "*"} {
		_ = deleteMatching(ctx, e.rdb, pattern) // prune.go
	}
	_ = e.rdb.Close()
}

// side is one side's figures in one round.
type side struct {
	index     int // 0 baseline, 1 cachekeeper
	enqPerS   float64
	procPerS  float64
	processed int64 // handler runs, counted after the side stopped
	// cpuPerTask is the CPU (this process and, on a private server, Redis)
	// spent per task while processing, in microseconds.
	cpuPerTask float64
}

// cpuMeter measures CPU spent by this process and, when the server is
// private, by Redis.
type cpuMeter struct {
	proc  time.Duration
	redis float64 // seconds
}

func (e *queueEnv) cpuNow(ctx context.Context) cpuMeter {
	m := cpuMeter{proc: processCPU()}
	if e.o.Private {
		m.redis = redisCPU(ctx, e.rdb)
	}
	return m
}

// perTask returns the CPU microseconds per task since m.
func (m cpuMeter) perTask(now cpuMeter, tasks int) float64 {
	us := float64(now.proc-m.proc)/1e3 + (now.redis-m.redis)*1e6
	return us / float64(tasks)
}

// redisCPU returns used_cpu_user + used_cpu_sys of INFO cpu, in seconds.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) float64 {
	text, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(text, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_user" || name == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

// enqueue sends n no-op tasks to queue from 8 goroutines and returns the rate.
func (e *queueEnv) enqueue(ctx context.Context, queue string, n int) (float64, error) {
	const producers = 8
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	payload := []byte(`{"i":1}`)
	start := time.Now()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := e.client.EnqueueContext(ctx, asynq.NewTask(NoopKind, payload), asynq.Queue(queue)); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("enqueue to %s: %w", queue, err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// counter counts no-op runs and notes when the first starts and the last ends.
type counter struct {
	n     int64
	done  atomic.Int64
	first atomic.Int64 // unix nanos of the first handler start
	last  atomic.Int64 // unix nanos of the n-th handler end
	all   chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), all: make(chan struct{})} }

func (c *counter) ProcessTask(context.Context, *asynq.Task) error {
	c.first.CompareAndSwap(0, time.Now().UnixNano())
	if c.done.Add(1) == c.n {
		c.last.Store(time.Now().UnixNano())
		close(c.all)
	}
	return nil
}

// wait blocks until every task ran, and returns the processing rate.
func (c *counter) wait(ctx context.Context, what string, timeout time.Duration) (float64, error) {
	select {
	case <-c.all:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s processed %d of %d tasks within %s", what, c.done.Load(), c.n, timeout)
	}
	d := time.Duration(c.last.Load() - c.first.Load())
	if d <= 0 {
		d = time.Microsecond
	}
	return float64(c.n) / d.Seconds(), nil
}

// processTimeout bounds one side's processing: generous, a failure not a hang.
func processTimeout(n int) time.Duration { return 30*time.Second + time.Duration(n)*time.Millisecond }

// runOurs enqueues the tasks on the default queue of a fresh queue layout and
// processes them with cachekeeper's worker.
func (e *queueEnv) runOurs(ctx context.Context) (side, error) {
	prefix := e.layout()
	cfg := e.o.workerConfig(prefix)
	for q := range cfg.Worker.Queues {
		e.queues = append(e.queues, q)
	}
	queue := prefix + "default"
	if e.o.SingleQueue {
		cfg.Worker.Queues = map[string]int{queue: 1}
		cfg.Worker.FastLane.Queue = ""
	}
	enq, err := e.enqueue(ctx, queue, e.o.Tasks)
	if err != nil {
		return side{}, err
	}
	cnt := newCounter(e.o.Tasks)
	cpu0 := e.cpuNow(ctx)
	stop, err := startWorker(ctx, cfg, e.rdb, e.o.WorkerLogger, cnt)
	if err != nil {
		return side{}, err
	}
	rate, err := cnt.wait(ctx, "cachekeeper's worker", processTimeout(e.o.Tasks))
	cpu := cpu0.perTask(e.cpuNow(ctx), e.o.Tasks)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return side{}, err
	}
	if err := e.drained(ctx, queue); err != nil {
		return side{}, err
	}
	return side{index: 1, enqPerS: enq, procPerS: rate, processed: cnt.done.Load(), cpuPerTask: cpu}, nil
}

// runBaseline does the same with one bare asynq server.
func (e *queueEnv) runBaseline(ctx context.Context) (side, error) {
	queue := e.layout() + "raw"
	e.queues = append(e.queues, queue)
	enq, err := e.enqueue(ctx, queue, e.o.Tasks)
	if err != nil {
		return side{}, err
	}
	cnt := newCounter(e.o.Tasks)
	cpu0 := e.cpuNow(ctx)
	mux := asynq.NewServeMux()
	mux.Handle(NoopKind, cnt)
	srv := asynq.NewServer(e.connOpt, asynq.Config{Concurrency: e.o.Concurrency, Queues: map[string]int{queue: 1},
		LogLevel: asynq.ErrorLevel, Logger: quietLogger{}})
	if err := srv.Start(mux); err != nil {
		return side{}, fmt.Errorf("start baseline asynq server: %w", err)
	}
	rate, err := cnt.wait(ctx, "the baseline asynq server", processTimeout(e.o.Tasks))
	cpu := cpu0.perTask(e.cpuNow(ctx), e.o.Tasks)
	srv.Shutdown()
	if err != nil {
		return side{}, err
	}
	if err := e.drained(ctx, queue); err != nil {
		return side{}, err
	}
	return side{index: 0, enqPerS: enq, procPerS: rate, processed: cnt.done.Load(), cpuPerTask: cpu}, nil
}

// drained checks that queue holds no pending, active or retried task: every
// task was processed and acknowledged.
func (e *queueEnv) drained(ctx context.Context, queue string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := e.insp.GetQueueInfo(queue)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", queue, err)
		}
		if info.Pending+info.Active+info.Retry+info.Archived+info.Scheduled == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue %s still holds %d pending, %d active, %d retry, %d archived tasks after processing",
				queue, info.Pending, info.Active, info.Retry, info.Archived)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startWorker runs cachekeeper's worker with h as the no-op kind's handler
// and returns a function that stops it and reports its error.
func startWorker(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, logger *slog.Logger, h asynq.Handler) (func() error, error) {
	w, err := worker.New(cfg, worker.Deps{Redis: rdb, Registry: prometheus.NewRegistry()}, logger, worker.WithHandler(NoopKind, h))
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	var once sync.Once
	var runErr error
	stop := func() error { // idempotent
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	deadline := time.Now().Add(10 * time.Second)
	for !w.Ready() {
		select {
		case err := <-done:
			cancel()
			if err == nil {
				err = errors.New("worker stopped at start")
			}
			return nil, err
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, errors.New("cachekeeper's worker did not start within 10s")
		}
	}
	return stop, nil
}

func queueLayout(single bool) string {
	if single {
		return "single"
	}
	return "critical=6,default=3,low=1+fast_lane"
}

// quietLogger drops the baseline server's log lines (it logs its start and
// stop at info level, which would clutter the output).
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
