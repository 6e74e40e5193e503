// Command embedded is an application that embeds cachekeeper through its
// public API only: it loads cachekeeper.yaml (the same file, environment
// variables and flags as the cachekeeper CLI), runs a worker and the
// scheduler in its own process, enqueues jobs with package tasks, uses the
// session store and rate limiter in the layout the worker maintains, declares
// a job kind of its own (example:greet, greet.go), and stops cleanly on
// SIGINT or SIGTERM.
//
//	go run . -config cachekeeper.yaml -redis-url redis://127.0.0.1:6379/0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		if errors.Is(err, config.ErrInvalid) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run is the whole application; it returns when ctx ends and everything it
// started has stopped.
func run(ctx context.Context, args []string, env func(string) string, logOut io.Writer) error {
	fs := flag.NewFlagSet("embedded", flag.ContinueOnError)
	fs.SetOutput(logOut)
	var flags config.Flags
	flags.Register(fs)
	channel := fs.String("channel", "app:hello", "pub/sub channel the application's own job publishes on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := flags.Load(env)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))

	deps, err := worker.Connect(cfg)
	if err != nil {
		return err
	}
	defer deps.Close()
	// The application's own kind, handled beside the built-in ones.
	w, err := worker.New(cfg, deps, logger, worker.WithKind(greetHandler(deps.Redis)))
	if err != nil {
		return err
	}
	sched, err := scheduler.New(scheduler.Config{Entries: cfg.Schedule, KeyPrefix: cfg.KeyPrefix}, deps.Redis, logger)
	if err != nil {
		return err
	}
	// The application's side of the data the worker keeps small: the same
	// key templates, from the same file.
	sessions, err := session.NewFromConfig(deps.Redis, cfg.Sessions)
	if err != nil {
		return err
	}
	limiter, err := ratelimit.NewFromConfig(deps.Redis, cfg.RateLimits, 100)
	if err != nil {
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(ctx) })
	g.Go(func() error { return sched.Run(ctx) })
	g.Go(func() error { return app(ctx, logger, deps.Client, sessions, limiter, *channel) })
	return g.Wait()
}

// app stands for the application's own work: a login that creates a
// session, a rate-limited request, and a job for the worker.
func app(ctx context.Context, logger *slog.Logger, client *tasks.Client, sessions *session.Store, limiter *ratelimit.Limiter, channel string) error {
	token, err := sessions.Create(ctx, "alice", map[string]string{"theme": "dark"})
	if err != nil {
		return err
	}
	res, err := limiter.Allow(ctx, "alice")
	if err != nil {
		return err
	}
	logger.Info("request", slog.String("session", token[:6]+"..."), slog.Bool("allowed", res.Allowed), slog.Int("remaining", res.Remaining))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, p := range []tasks.Payload{
			&tasks.NotifyArgs{Channel: channel, Message: "hello from the application"},
			&GreetArgs{Name: "ada"}, // the application's own kind, through the same client
		} {
			info, err := client.Enqueue(ctx, p)
			switch {
			case err == nil:
				logger.Info("enqueued", slog.String("kind", p.Kind()), slog.String("id", info.ID), slog.String("queue", info.Queue))
			case ctx.Err() == nil:
				return fmt.Errorf("enqueue %s: %w", p.Kind(), err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
