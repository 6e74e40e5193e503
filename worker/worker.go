package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/asynqx"
	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/tracing"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Deps are the connections handlers use. The caller owns them and closes
// them after Run returns.
type Deps struct {
	// Redis runs cachekeeper's own commands (cache writes, scans, pub/sub).
	Redis redis.UniversalClient
	// DB is the database cached rows come from; nil when no cache is declared.
	DB *sqlx.DB
	// Client enqueues follow-up jobs (for example a rewarm after invalidation).
	Client *tasks.Client
	// Registry receives the worker's metrics; nil means not exported.
	Registry prometheus.Registerer
	// TracerProvider, when set, traces every job (trace.go): a span per
	// job, child of its producer's, with spans for its Redis commands (a
	// hook added to Redis) and SQL queries. Give Client the same provider
	// (tasks.WithTracerProvider) so that follow-up jobs join the trace.
	TracerProvider trace.TracerProvider
}

// Worker runs jobs from the configured queues until its context ends.
type Worker struct {
	cfg     config.Config
	connOpt asynq.RedisConnOpt
	deps    Deps
	keys    keys.Keys
	logger  *slog.Logger
	metrics *Metrics
	// events publishes cache-change events; nil when events are disabled.
	events *events.Publisher
	// send publishes them the same way for every kind (publish.go).
	send  *eventSender
	mux   *asynq.ServeMux
	kinds []string
	// appKinds are the kinds of the application's own (WithKind).
	appKinds []tasks.KindSpec

	// warm is the cache warming family's state; nil when no cache is declared.
	warm *warmer
	// coalesce turns WarmCache's pending ids into jobs; nil without caches.
	coalesce *coalescer
	// idle makes the idle main servers wait instead of polling; nil when
	// worker.idle_wait is 0 or before Run.
	idle *idleWait

	// extra are long-running parts started and stopped with the servers.
	extra   []namedRunner
	ready   atomic.Bool
	servers []*asynq.Server
	// lane is the fast lane of the running worker (nil when off).
	lane *fastLane
	mu   sync.Mutex
	// handler is mux behind the middleware: what the servers run.
	handler asynq.Handler
	// db watches the database; nil when no cache is declared.
	db *dbMonitor
	// tracer traces jobs (nil: off); sqlDB is the database the cache specs
	// read with, traced when tracer is set.
	tracer trace.Tracer
	sqlDB  tracing.DB
	// cancels ends running jobs on `cachekeeper task cancel`.
	cancels *canceller
	// fence cancels running jobs when this worker is cut off from Redis
	// (nil when recovery is off).
	fence *selfFence
	// leases is what the servers' lease taps saw (nil when recovery is off).
	leases *leaseBook
	// dequeue is whether the servers can take jobs (backoff.go).
	dequeue *dequeueHealth
}

type namedRunner struct {
	name string
	run  func(ctx context.Context) error
}

// New builds a worker from a validated configuration. It registers the
// handler of every kind it can run and fails on a configuration it cannot
// honour (for example a cache spec whose query does not match its key).
// Options add handlers of the caller's own (see WithHandler).
func New(cfg config.Config, deps Deps, logger *slog.Logger, opts ...Option) (*Worker, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if deps.Redis == nil {
		return nil, errors.New("worker: Deps.Redis is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	connOpt, err := cfg.Redis.ConnOpt()
	if err != nil {
		return nil, err
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return nil, err
	}
	m, err := NewMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("worker metrics: %w", err)
	}
	w := &Worker{cfg: cfg, connOpt: connOpt, deps: deps, keys: k, logger: logger, metrics: m, mux: asynq.NewServeMux(),
		dequeue: newDequeueHealth(logger)}
	w.initSeries()
	if !cfg.Events.Disabled {
		if w.events, err = events.NewPublisher(deps.Redis, cfg.Events.Channel, cfg.Events.MaxKeys); err != nil {
			return nil, err
		}
	}
	// The middleware wraps the mux once; mux.Use would wrap each handler
	// again for every job (two allocations per job).
	w.send = &eventSender{pub: w.events, logger: logger, failed: m.EventsFailed}
	guard, err := cfg.Guard()
	if err != nil {
		return nil, err
	}
	rule := k.Rule(cfg.OwnedKeys()...)
	w.setupTracing() // trace.go
	w.cancels = newCanceller(k.CancelChannel(), logger)
	w.handler = w.traceJobs(instrument(logger, m)(w.cancels.middleware(recoverPanics(logger)(protect(logger, m, rule, guard)(w.mux)))))
	w.addRunner("cancel listener", func(ctx context.Context) error { return w.cancels.run(ctx, deps.Redis) })
	if err := w.registerHandlers(); err != nil {
		return nil, err
	}
	// Options first: a declared kind (WithKind) adds its queue, which the
	// recoverer watches too.
	if err := w.apply(opts); err != nil {
		return nil, err
	}
	w.handler = w.passOn(w.handler) // appkind.go: a kind without handler here waits for one
	if len(w.appKinds) > 0 {
		w.addRunner("kind catalog", w.publishKinds)
	}
	if err := w.registerRecoverer(); err != nil { // recover.go
		return nil, err
	}
	if w.fence != nil {
		w.handler = w.fence.middleware(w.handler)
	}
	return w, nil
}

// Kinds returns the kinds this worker has handlers for.
func (w *Worker) Kinds() []string { return append([]string(nil), w.kinds...) }

// Metrics returns the worker's collectors.
func (w *Worker) Metrics() *Metrics { return w.metrics }

// Handler returns the mux with middleware, for tests and benchmarks that
// drive their own asynq server.
func (w *Worker) Handler() asynq.Handler { return w.handler }

// Ready reports whether every server has started and none has stopped.
func (w *Worker) Ready() bool { return w.ready.Load() }

// DequeueErr is the error of the servers' last dequeue while they cannot
// take jobs from Redis (out of memory, a missing permission), else nil.
func (w *Worker) DequeueErr() error { return w.dequeue.Err() }

// addRunner adds a long-running part (such as the inbox bridge) that starts
// and stops with the worker; its error stops the worker.
func (w *Worker) addRunner(name string, run func(ctx context.Context) error) {
	w.extra = append(w.extra, namedRunner{name, run})
}

// queueNames returns the queues the worker serves, sorted.
func (w *Worker) queueNames() []string { return w.cfg.QueueNames() }

// serverConfig is the asynq configuration of one of the worker's servers.
func (w *Worker) serverConfig(concurrency int) asynq.Config {
	wc := w.cfg.Worker
	c := asynq.Config{
		Concurrency:       concurrency,
		Queues:            wc.Queues,
		StrictPriority:    wc.StrictPriority,
		ShutdownTimeout:   asynqShutdownTimeout(wc.ShutdownTimeout, wc.TaskCheckInterval),
		TaskCheckInterval: wc.TaskCheckInterval,
		Logger:            asynqLogger{w.logger},
		LogLevel:          asynqLevel(w.logger),
		IsFailure:         isFailure,  // appkind.go: a job passed on is no failure
		RetryDelayFunc:    retryDelay, // and is offered again soon
	}
	return c
}

// Run starts the servers and every other part, and blocks until ctx ends or
// one part fails; then it stops everything, letting running jobs finish
// within the shutdown timeout.
func (w *Worker) Run(ctx context.Context) error {
	wc := w.cfg.Worker
	w.loadFunctions(ctx) // functions.go
	// The queues served exist from the start: listed, and pausable, before
	// any job used them.
	if err := asynqx.RegisterQueues(ctx, w.deps.Redis, w.queueNames()...); err != nil {
		w.logger.Warn("could not register the worker's queues; they appear once a job uses them", slog.String("error", err.Error()))
	}
	// The declared kinds are known to producers before the first job runs.
	if err := catalog.Publish(ctx, w.deps.Redis, w.keys, w.appKinds, catalog.DefaultTTL); err != nil {
		w.logger.Warn("could not record the kinds this worker handles; retrying in the background", slog.String("error", err.Error()))
	}
	if w.coalesce != nil {
		w.coalesce.firstPass(ctx)
	}
	w.mu.Lock()
	if wc.IdleWait > 0 {
		queues := make([]string, 0, len(wc.Queues))
		for q := range wc.Queues {
			queues = append(queues, q)
		}
		iw, err := newIdleWait(queues, wc.IdleWait, w.connOpt, w.logger)
		if err != nil {
			w.mu.Unlock()
			return err
		}
		w.idle = iw
	}
	for i := 0; i < wc.Servers; i++ {
		// Spread concurrency: the first servers take the remainder.
		c := wc.Concurrency / wc.Servers
		if i < wc.Concurrency%wc.Servers {
			c++
		}
		sc := w.serverConfig(c)
		if i == 0 {
			// One forwarder per process is enough to move due jobs on time;
			// the others keep asynq's 5s.
			sc.DelayedTaskCheckInterval = wc.DelayedTaskCheckInterval
		}
		if w.idle != nil {
			// The idle wait does the waiting (idlewait.go).
			sc.TaskCheckInterval = min(sc.TaskCheckInterval, idlePoll)
			if i > 0 {
				// One janitor per process is enough to delete expired
				// finished jobs, as one forwarder is.
				sc.JanitorInterval = time.Minute
			}
		}
		srv := asynq.NewServer(w.serverConnOpt(), sc)
		if err := srv.Start(w.handler); err != nil {
			w.mu.Unlock()
			w.shutdown()
			return fmt.Errorf("start worker: %w", err)
		}
		w.servers = append(w.servers, srv)
	}
	if err := w.startFastLane(); err != nil {
		w.mu.Unlock()
		w.shutdown()
		return err
	}
	w.mu.Unlock()
	w.ready.Store(true)
	w.logger.Info("worker started", slog.Int("servers", wc.Servers), slog.Int("concurrency", wc.Concurrency),
		slog.Any("queues", wc.Queues), slog.String("fast_lane", wc.FastLane.Queue), slog.Any("kinds", w.kinds))

	g, gctx := errgroup.WithContext(ctx)
	for _, r := range w.extra {
		g.Go(func() error {
			if err := r.run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		w.shutdown()
		return nil
	})
	err := g.Wait()
	w.logger.Info("worker stopped")
	return err
}

// ShutdownGrace is what the process allows beyond worker.shutdown_timeout
// for stopping once running jobs had their time: `cachekeeper worker` is gone
// within shutdown_timeout plus this, even when a part does not stop in time
// (asynq's processor, for one, sleeps out its poll interval before it
// starts the shutdown timer).
const ShutdownGrace = 800 * time.Millisecond

// asynqShutdownTimeout is the time asynq gives running jobs on stop, so that
// the whole stop fits in shutdown_timeout plus grace: before asynq starts
// that timer, each server's processor may sleep up to 1.5 poll intervals
// (asynq polls an empty queue every task_check_interval, plus jitter), and
// handing the unfinished jobs back and stopping its other parts takes a
// few hundred milliseconds after it. So jobs get shutdown_timeout plus 0.5s
// minus 1.5 poll intervals (29s of the default 30s; never more than
// shutdown_timeout, never less than half of it).
func asynqShutdownTimeout(timeout, taskCheck time.Duration) time.Duration {
	d := timeout + ShutdownGrace - taskCheck*3/2 - 300*time.Millisecond
	return max(min(d, timeout), timeout/2)
}

func (w *Worker) shutdown() {
	w.ready.Store(false)
	w.dequeue.stop() // no backoff sleep holds a server's stop
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lane != nil {
		w.lane.stop() // end its wait so its server stops at once
	}
	if w.idle != nil {
		w.idle.stop() // likewise for the main servers
	}
	if w.coalesce != nil {
		// Also when a server failed to start after the first pass: no lease
		// of this worker's may keep the fleet waiting.
		w.coalesce.releaseAll(context.Background())
	}
	var wg sync.WaitGroup
	for _, srv := range w.servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Shutdown() }()
	}
	wg.Wait()
	w.servers = nil
	w.lane = nil
}

// serverConnOpt is the connection option of the main servers: each server's
// client skips queues it has just found empty (see emptySkip), when more
// than one queue is served and the backoff is on.
func (w *Worker) serverConnOpt() asynq.RedisConnOpt {
	wc := w.cfg.Worker
	base := w.connOpt
	if w.idle != nil {
		base = w.idle.connOpt(base) // its hook outermost: it sees emptySkip's answers
	}
	backoff := min(wc.EmptyQueueBackoff, wc.TaskCheckInterval/2)
	if backoff <= 0 || len(wc.Queues) < 2 {
		return w.tapped(base)
	}
	return w.tapped(skipConnOpt{base: base, backoff: backoff})
}

// tapped adds, closest to the wire, the dequeue backoff (backoff.go) and,
// when recovery is on, the lease tap (leasetap.go) to a server's connection
// option.
func (w *Worker) tapped(o asynq.RedisConnOpt) asynq.RedisConnOpt {
	o = backoffConnOpt{base: o, health: w.dequeue}
	if w.leases == nil {
		return o
	}
	return tapConnOpt{base: o, book: w.leases}
}

// startFastLane starts the fast lane's server, when configured: it serves
// only the lane's queue, with the lane's poll interval and a Redis client
// whose empty dequeues wait for a job (see fastLane). Called with w.mu held.
func (w *Worker) startFastLane() error {
	fl := w.cfg.Worker.FastLane
	if fl.Queue == "" {
		return nil
	}
	lane, err := newFastLane(fl, w.connOpt, w.logger)
	if err != nil {
		return err
	}
	w.lane = lane
	sc := w.serverConfig(fl.Concurrency)
	sc.Queues = map[string]int{fl.Queue: 1}
	sc.StrictPriority = false
	sc.TaskCheckInterval = fl.TaskCheckInterval
	if w.idle != nil {
		// The main servers forward due jobs, cheaply (idlewait.go), and
		// delete expired finished ones.
		sc.DelayedTaskCheckInterval = time.Minute
		sc.JanitorInterval = time.Minute
	}
	base := w.connOpt
	if w.idle != nil {
		// While every queue is idle the lane waits with the main servers
		// (its own wait then polls Redis every fast_lane.wait); the idle
		// hook is outermost, so it sees the lane's answers.
		base = w.idle.connOpt(base)
	}
	srv := asynq.NewServer(w.tapped(lane.connOpt(base)), sc)
	if err := srv.Start(w.handler); err != nil {
		return fmt.Errorf("start worker fast lane: %w", err)
	}
	w.servers = append(w.servers, srv)
	return nil
}
