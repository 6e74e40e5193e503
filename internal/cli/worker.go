package cli

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/redisacl"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

func workerCommand(io IO) *ucli.Command {
	def := config.Default().Worker
	return &ucli.Command{
		Name:  "worker",
		Usage: "run jobs from the queues until interrupted (SIGINT/SIGTERM stop it gracefully)",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "concurrency", Value: def.Concurrency, Usage: "jobs run at once in this process (env " + config.EnvConcurrency + ")"},
			&ucli.IntFlag{Name: "servers", Value: def.Servers, Usage: "asynq servers in this process; more servers dequeue faster (env " + config.EnvServers + ")"},
			&ucli.StringFlag{Name: "metrics-addr", Value: def.MetricsAddr, Usage: "address for /metrics, /healthz, /readyz and the cachekeeper page /caches; empty disables (env " + config.EnvMetricsAddr + ")"},
			&ucli.BoolFlag{Name: "ui", Usage: "serve the asynqmon web UI under /ui/ on --metrics-addr; whoever reaches it can delete and re-run jobs (worker.ui)"},
		}, connFlags()...),
		Action: func(c *ucli.Context) error {
			cfg, err := loadConfig(c, io, func(cfg *config.Config) {
				if c.IsSet("concurrency") {
					cfg.Worker.Concurrency = c.Int("concurrency")
				}
				if c.IsSet("servers") {
					cfg.Worker.Servers = c.Int("servers")
				}
				if c.IsSet("metrics-addr") {
					cfg.Worker.MetricsAddr = c.String("metrics-addr")
				}
				if c.IsSet("ui") {
					cfg.Worker.UI = c.Bool("ui")
				}
			})
			if err != nil {
				return err
			}
			return runWorker(c.Context, cfg, io)
		},
	}
}

// runWorker runs the worker and its HTTP endpoints together until ctx ends;
// the first failure stops both.
func runWorker(ctx context.Context, cfg config.Config, io IO) error {
	logger := newLogger(cfg, io.Stderr)
	// Refuse an exposed UI before touching any service.
	if _, err := uiCredentials(cfg, io.Env); err != nil {
		return err
	}
	// The database is not pinged here: with it down the worker starts
	// degraded (worker/database.go) instead of exiting.
	svc, err := connect(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	// A user without a permission the worker needs is refused here, naming
	// the ACL rule to add, not found job by job.
	if _, err := checkRedisPermissions(ctx, svc.redis, cfg); err != nil {
		if !errors.Is(err, redisacl.ErrUnchecked) {
			return err
		}
		logger.Warn("Redis permissions not checked; the worker starts", slog.String("reason", err.Error()))
	}
	if len(cfg.Caches) > 0 {
		if svc.db, err = sqldb.Open(cfg.Database); err != nil {
			return usagef("%v", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := registerQueueMetrics(reg, cfg, svc); err != nil {
		return err
	}
	tp, stopTracing, err := startTracing(ctx, io, "cachekeeper-worker", logger) // tracing.go
	if err != nil {
		return err
	}
	defer stopTracing()
	svc.traced(tp)
	w, err := worker.New(cfg, worker.Deps{Redis: svc.redis, DB: svc.db, Client: svc.client, Registry: reg, TracerProvider: tp}, logger)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.Worker.MetricsAddr != "" {
		extra, closeUI, err := workerUI(cfg, io.Env)
		if err != nil {
			return err
		}
		defer func() {
			if err := closeUI(); err != nil {
				logger.Warn("closing the web UI's Redis connections", slog.Any("error", err))
			}
		}()
		pages, err := workerCaches(cfg, io.Env, svc, reg, logger)
		if err != nil {
			return err
		}
		if extra == nil {
			extra = map[string]http.Handler{}
		}
		maps.Copy(extra, pages)
		hs, err := httpapi.New(cfg.Worker.MetricsAddr, reg, workerReadiness(w, svc), logger, extra)
		if err != nil {
			return listenError("worker.metrics_addr (--metrics-addr)", cfg.Worker.MetricsAddr, err)
		}
		if cfg.Worker.UI {
			logger.Info("serving the asynqmon web UI", slog.String("addr", hs.Addr()), slog.String("path", uiPath), slog.Bool("read_only", cfg.Worker.UIReadOnly))
		}
		logger.Info("serving the cachekeeper page", slog.String("addr", hs.Addr()), slog.String("path", httpapi.CachesPath))
		g.Go(func() error { return hs.Run(gctx) })
	}
	g.Go(func() error { return w.Run(gctx) })
	err = waitBounded(gctx, g, cfg.Worker.ShutdownTimeout+worker.ShutdownGrace, logger)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		logger.Info("shut down cleanly", slog.String("reason", "interrupted"))
	}
	return err
}
