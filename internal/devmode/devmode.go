// Package devmode runs the whole product on one machine with no services:
// an embedded Redis (miniredis with wall-clock TTLs), an SQLite demo database
// seeded with users, the worker, and a small producer that enqueues demo jobs
// and narrates what happens. `cachekeeper dev` runs it until Ctrl-C.
package devmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// Options configure a dev run. Empty URLs mean the embedded services.
type Options struct {
	// RedisURL uses a real Redis instead of the embedded one.
	RedisURL string
	// DatabaseURL uses a real database instead of a temporary SQLite file.
	DatabaseURL string
	// Out receives the narration (stdout).
	Out io.Writer
	// Logger receives the worker's logs (stderr).
	Logger *slog.Logger
	// Interval is the pause between demo rounds.
	Interval time.Duration
	// Rounds stops after this many demo rounds (0: run until ctx ends).
	Rounds int
	// Ready, when set, is called once everything has started.
	Ready func(Env)
	// HTTPAddr is where the worker's HTTP endpoints (/metrics, /healthz,
	// /readyz) and the asynqmon UI (/ui/) are served; it must be a loopback
	// address (the UI can delete jobs and has no login here). Empty: none.
	HTTPAddr string
	// Version is cachekeeper's version, for cachekeeper_build_info.
	Version string
}

// Env is what a demo step can use.
type Env struct {
	Client   *tasks.Client
	Redis    redis.UniversalClient
	DB       *sqlx.DB
	Config   config.Config
	Out      io.Writer
	RedisURL string
	// HTTPAddr is the address the HTTP endpoints listen on ("" when off).
	HTTPAddr string
	// Metrics is the worker's metrics registry.
	Metrics prometheus.Gatherer
	// Gate pauses the user cache's reads of the embedded SQLite on demand
	// (DemoFencedWrite); nil with --database-url.
	Gate *DemoGate
}

// Step is one demonstration: it enqueues jobs and prints what they did.
type Step struct {
	Name string
	Run  func(ctx context.Context, env Env) error
}

// steps are run in order, one round after another.
func steps() []Step {
	return []Step{
		{Name: "warm", Run: func(ctx context.Context, env Env) error { return DemoWarm(ctx, env.Client, env.Redis, env.Out) }},
		{Name: "invalidate", Run: func(ctx context.Context, env Env) error {
			return DemoInvalidate(ctx, env.Client, env.Redis, env.Out)
		}},
		{Name: "tag", Run: func(ctx context.Context, env Env) error {
			return DemoInvalidateTag(ctx, env.Client, env.Redis, env.Out)
		}},
		{Name: "schedule", Run: func(ctx context.Context, env Env) error { return DemoSchedulerTick(ctx, env.Redis, env.Out) }},
		{Name: "fence", Run: func(ctx context.Context, env Env) error {
			return DemoFencedWrite(ctx, env.Client, env.Redis, env.Metrics, env.Gate, env.Out)
		}},
		{Name: "sessions", Run: func(ctx context.Context, env Env) error { return DemoSessions(ctx, env.Redis, env.Out) }},
		{Name: "notify", Run: demoNotify},
	}
}

// demoTickEvery is how often demoTickEntry fires.
const demoTickEvery = "@every 3s"

// demoSchedule runs the housekeeping jobs often enough to watch them.
func demoSchedule() []scheduler.EntryConfig {
	return []scheduler.EntryConfig{
		{Name: demoTickEntry, Schedule: demoTickEvery, Kind: tasks.KindRateLimitPrune},
		{Name: "session-cleanup", Schedule: "@every 30s", Kind: tasks.KindSessionCleanup},
		{Name: "rate-limit-prune", Schedule: "@every 20s", Kind: tasks.KindRateLimitPrune},
		{Name: "warm-user-nightly", Schedule: "0 3 * * *", TimeZone: "UTC", Kind: tasks.KindWarmAll, Args: map[string]any{"cache": "user"}},
	}
}

// Run starts everything, runs demo rounds, and stops cleanly when ctx ends.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	cfg := config.Default()
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 2
	cfg.Worker.Concurrency = 8
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	cfg.Caches = config.DemoCaches()
	cfg.Caches["user"] = demoUserCache(cfg.Caches["user"])
	cfg.Schedule = demoSchedule()

	redisURL := opts.RedisURL
	if redisURL == "" {
		m := miniredis.NewMiniRedis()
		// asynq and session TTLs need TTLs that expire on wall-clock time.
		m.ClockTTL(true)
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded Redis: %w", err)
		}
		defer m.Close()
		redisURL = "redis://" + m.Addr() + "/0"
		fmt.Fprintf(opts.Out, "embedded Redis (miniredis) listening on %s — look inside with: redis-cli -p %s\n", m.Addr(), m.Port())
	} else {
		fmt.Fprintf(opts.Out, "using Redis at %s\n", config.RedactURL(redisURL))
	}
	cfg.Redis = config.RedisConfig{URL: redisURL}

	dbURL := opts.DatabaseURL
	var gate *DemoGate
	if dbURL == "" {
		dir, err := os.MkdirTemp("", "cachekeeper-dev")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbURL = "sqlite://" + filepath.Join(dir, "demo.db")
		user := cfg.Caches["user"]
		var dropGate func()
		gate, user.ByIDs, dropGate = newGate(user.ByIDs)
		defer dropGate()
		cfg.Caches["user"] = user
		fmt.Fprintf(opts.Out, "demo SQLite database at %s\n", filepath.Join(dir, "demo.db"))
	} else {
		fmt.Fprintf(opts.Out, "using database at %s\n", config.RedactURL(dbURL))
	}
	cfg.Database = config.DatabaseConfig{URL: dbURL}
	if err := cfg.Validate(); err != nil {
		return err
	}

	db, err := sqldb.Open(cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := seedUsers(ctx, db)
	if err != nil {
		return fmt.Errorf("seed demo users: %w", err)
	}
	fmt.Fprintf(opts.Out, "users table ready (%d rows)\n", n)

	rdb, err := cfg.Redis.NewClient()
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", config.RedactURL(redisURL), err)
	}
	client := tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix(cfg.KeyPrefix))
	reg := prometheus.NewRegistry()
	w, err := worker.New(cfg, worker.Deps{Redis: rdb, DB: db, Client: client, Registry: reg}, opts.Logger)
	if err != nil {
		return err
	}
	env := Env{Client: client, Redis: rdb, DB: db, Config: cfg, Out: opts.Out, RedisURL: redisURL, Metrics: reg, Gate: gate}

	sched, err := scheduler.New(scheduler.Config{Entries: cfg.Schedule, KeyPrefix: cfg.KeyPrefix}, rdb, opts.Logger)
	if err != nil {
		return err
	}

	// Last before the goroutines start: nothing returns between the listen
	// and hs.Run, which closes the listener when ctx ends.
	var hs *httpapi.Server
	if opts.HTTPAddr != "" {
		var closeUI func() error
		if hs, closeUI, err = serveHTTP(cfg, opts, w, rdb, reg); err != nil {
			return err
		}
		defer func() { _ = closeUI() }()
		env.HTTPAddr = hs.Addr()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	if hs != nil {
		g.Go(func() error { return hs.Run(gctx) })
	}
	g.Go(func() error {
		if err := waitReady(gctx, w); err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "worker running (kinds: %v); demo rounds every %s — Ctrl-C to stop\n", w.Kinds(), opts.Interval)
		if env.HTTPAddr != "" {
			base := "http://" + env.HTTPAddr
			fmt.Fprintf(opts.Out, "web UI (asynqmon): %s/ui/   cachekeeper page: %s/caches   metrics: %s/metrics   health: %s/healthz   readiness: %s/readyz\n", base, base, base, base, base)
			fmt.Fprintf(opts.Out, "the schedule below is on %s/caches and in 'cachekeeper schedule list'; asynqmon's Schedulers page lists only asynq's own scheduler, which cachekeeper does not use (its replicas enqueue each tick once by task id), so it stays empty\n", base)
		}
		for _, e := range sched.Entries() {
			fmt.Fprintf(opts.Out, "scheduler: %s (%s, %s) next at %s\n", e.Name, e.Kind, e.Schedule, e.Next(1)[0].Format(time.TimeOnly))
		}
		if opts.Ready != nil {
			opts.Ready(env)
		}
		return produce(gctx, env, opts)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, errRoundsDone) {
		err = nil
	}
	fmt.Fprintln(opts.Out, "stopped cleanly")
	return err
}

var errRoundsDone = errors.New("demo rounds done")

// serveHTTP listens on opts.HTTPAddr, which must be loopback: dev's UI has
// no login and can delete jobs.
func serveHTTP(cfg config.Config, opts Options, w *worker.Worker, rdb redis.UniversalClient, reg *prometheus.Registry) (*httpapi.Server, func() error, error) {
	if !IsLoopback(opts.HTTPAddr) {
		return nil, nil, fmt.Errorf("%w: dev serves its UI without a login, so its HTTP address %q must be loopback, e.g. 127.0.0.1:9090", config.ErrInvalid, opts.HTTPAddr)
	}
	opt, err := cfg.Redis.ConnOpt()
	if err != nil {
		return nil, nil, err
	}
	ui := asynqmon.New(asynqmon.Options{RootPath: "/ui", RedisConnOpt: opt})
	ready := func(ctx context.Context) error {
		if !w.Ready() {
			return errors.New("worker not started")
		}
		return rdb.Ping(ctx).Err()
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		_ = ui.Close()
		return nil, nil, err
	}
	insp := asynq.NewInspector(opt)
	// The same gauges as the real worker's /metrics: queue sizes, latency,
	// pauses, coalesced ids, dead letters, and the build.
	qsrc := httpapi.QueueSource{Inspector: insp, Redis: rdb, Keys: k, Caches: cfg.CacheNames(), Queues: queueNames(cfg.Worker.Queues)}
	if !cfg.Inbox.Disabled {
		qsrc.InboxKey = cfg.Inbox.Key
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	for _, c := range []prometheus.Collector{httpapi.NewQueueCollector(qsrc), httpapi.NewBuildInfo(version)} {
		if err := reg.Register(c); err != nil {
			_ = ui.Close()
			_ = insp.Close()
			return nil, nil, err
		}
	}
	src := httpapi.CachesSource{
		Inspector: insp, Redis: rdb, Keys: k, Caches: cfg.CacheNames(), Gatherer: reg,
		UIPath: "/ui/", Logger: opts.Logger,
	}
	if !cfg.Inbox.Disabled {
		src.InboxKey = cfg.Inbox.Key
	}
	if src.Schedule, err = scheduler.ParseEntries(cfg.Schedule); err != nil {
		src.ScheduleErr = err.Error()
	}
	handlers := httpapi.CachesHandlers(src)
	handlers["/ui/"] = ui
	hs, err := httpapi.New(opts.HTTPAddr, reg, ready, opts.Logger, handlers)
	closeAll := func() error { return errors.Join(ui.Close(), insp.Close()) }
	if err != nil {
		_ = closeAll()
		return nil, nil, err
	}
	return hs, closeAll, nil
}

// IsLoopback reports whether addr (host:port) names a loopback host.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func waitReady(ctx context.Context, w *worker.Worker) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !w.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// produce runs the demo steps round after round.
func produce(ctx context.Context, env Env, opts Options) error {
	for round := 1; ; round++ {
		fmt.Fprintf(env.Out, "\n== demo round %d ==\n", round)
		for _, s := range steps() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.Run(sctx, env)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Fprintf(env.Out, "[%s] failed: %v\n", s.Name, err)
			}
		}
		if opts.Rounds > 0 && round >= opts.Rounds {
			return errRoundsDone
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opts.Interval):
		}
	}
}

// queueNames are the configured queues, sorted.
func queueNames(queues map[string]int) []string {
	out := make([]string, 0, len(queues))
	for q := range queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}
