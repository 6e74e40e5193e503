package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/worker"
	"golang.org/x/sync/errgroup"
)

// workerReadiness is the worker's /readyz: the worker's servers and Redis
// are required, the database is not (with it down the worker still runs
// every job that needs only Redis; see internal/httpapi/readyz.go).
func workerReadiness(w *worker.Worker, svc *services) httpapi.Check {
	probes := []httpapi.Probe{
		{Name: "worker", Required: true, Check: func(context.Context) error {
			if !w.Ready() {
				return errors.New("worker not started")
			}
			if err := w.DequeueErr(); err != nil {
				return fmt.Errorf("jobs cannot be dequeued: %w", err)
			}
			return nil
		}},
		{Name: "redis", Required: true, Check: func(ctx context.Context) error { return svc.redis.Ping(ctx).Err() }},
	}
	if svc.db != nil {
		probes = append(probes, httpapi.Probe{Name: "database", Check: func(context.Context) error {
			if s := w.Database(); !s.Up {
				return s.Err
			}
			return nil
		}})
	}
	return httpapi.Probes(probes...)
}

// waitBounded waits for g; once ctx has ended (the process was told to
// stop) it waits at most bound more, so that the process is gone within
// worker.shutdown_timeout plus worker.ShutdownGrace even when a part is
// slow to stop. Jobs not handed back by then stay active with no live
// worker, and other workers' recoverers requeue them (worker/recover.go).
func waitBounded(ctx context.Context, g *errgroup.Group, bound time.Duration, logger *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopAt := time.Now()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case err := <-done:
		logger.Info("stopped", slog.Duration("took", time.Since(stopAt).Round(time.Millisecond)))
		return err
	case <-t.C:
		logger.Warn("not stopped within worker.shutdown_timeout plus grace; exiting anyway (unfinished jobs are requeued by the recoverer of any worker)",
			slog.Duration("bound", bound))
		return nil
	}
}
