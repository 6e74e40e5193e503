package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

// streamFlags name and tune the change stream; shared by `changes` and
// `changes status`.
func streamFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "stream", Value: "cachekeeper", Usage: "stream name: the PostgreSQL replication slot, and the Redis keys of lease, position and status"},
		&ucli.StringFlag{Name: "publication", Usage: "PostgreSQL publication (default: the stream name)"},
	}
}

// changesCommand is `cachekeeper changes` and `cachekeeper changes status`.
func changesCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "changes",
		Usage: "follow the database's change stream and enqueue fenced invalidations for the caches' changes: blocks",
		Description: "Reads PostgreSQL logical replication (pgoutput; needs wal_level=logical and a role with\n" +
			"REPLICATION; the publication and the slot are created when missing) or the MySQL/MariaDB\n" +
			"row-based binlog (binlog_format=ROW, binlog_row_image=FULL; the position is kept in Redis).\n" +
			"A row's INSERT, UPDATE (old and new id) or DELETE invalidates its cached key; TRUNCATE the whole\n" +
			"cache. The position advances only after the jobs are enqueued: a crash replays, nothing is lost.\n" +
			"Run several replicas: one holds the stream (a Redis lease), the others take over when it dies.\n" +
			"A stopped stream keeps WAL on the PostgreSQL primary: drop an unused slot with\n" +
			"SELECT pg_drop_replication_slot('cachekeeper'). SQLite has no change stream.",
		ArgsUsage: " ",
		Flags: append(append([]ucli.Flag{
			&ucli.StringFlag{Name: "metrics-addr", Usage: "address for /metrics, /healthz, /readyz (e.g. :9092); empty disables"},
			&ucli.IntFlag{Name: "batch-size", Value: 5000, Usage: "most ids in one cache:invalidate job (1-100000)"},
			&ucli.StringFlag{Name: "queue", Usage: "queue of the jobs (default: each kind's own)"},
			&ucli.DurationFlag{Name: "lease-ttl", Value: 5 * time.Second, Usage: "how long a dead holder keeps the stream from the other replicas"},
			&ucli.DurationFlag{Name: "visibility-timeout", Value: 10 * time.Second, Usage: "longest wait for a delivered commit to become visible to other sessions before its invalidations are sent anyway (and repeated at 3x, 12x and 60x this)"},
			&ucli.Int64Flag{Name: "wal-warn-bytes", Value: 1 << 30, Usage: "warn when the slot retains more WAL than this on the primary"},
		}, streamFlags()...), connFlags()...),
		Subcommands: []*ucli.Command{{
			Name:      "status",
			Usage:     "print the stream's position, the server's, the lag and the replica holding it",
			ArgsUsage: " ",
			Flags:     append(append([]ucli.Flag{outputFlag()}, streamFlags()...), connFlags()...),
			Action:    func(c *ucli.Context) error { return runChangesStatus(c, io) },
		}},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usagef("unknown changes command %q (commands: status; or no argument to run the stream)", c.Args().First())
			}
			return runChanges(c, io)
		},
	}
}

// changesConfig loads the configuration and builds the stream's.
func changesConfig(c *ucli.Context, io IO, run bool) (config.Config, changes.Config, error) {
	cfg, err := loadConfig(c, io)
	if err != nil {
		return cfg, changes.Config{}, err
	}
	if err := cfg.CheckChangeStream(); err != nil {
		return cfg, changes.Config{}, usagef("%v", err)
	}
	if !cfg.HasChanges() {
		return cfg, changes.Config{}, usagef("no cache has a changes: block; add one such as changes: {table: users, id: id} to a cache of the configuration")
	}
	sc := changes.Config{
		Caches: cfg.Caches, Database: cfg.Database, KeyPrefix: cfg.KeyPrefix,
		Name: c.String("stream"), Publication: c.String("publication"),
	}
	if run {
		sc.BatchSize = c.Int("batch-size")
		sc.Queue = c.String("queue")
		sc.LeaseTTL = c.Duration("lease-ttl")
		sc.VisibilityTimeout = c.Duration("visibility-timeout")
		sc.RetainedWALWarn = c.Int64("wal-warn-bytes")
	}
	return cfg, sc, nil
}

func runChanges(c *ucli.Context, io IO) error {
	cfg, sc, err := changesConfig(c, io, true)
	if err != nil {
		return err
	}
	if sc.VisibilityTimeout < 10*time.Millisecond {
		return usagef("--visibility-timeout must be at least 10ms, got %s", sc.VisibilityTimeout)
	}
	if sc.RetainedWALWarn < 1 {
		return usagef("--wal-warn-bytes must be positive, got %d", sc.RetainedWALWarn)
	}
	logger := newLogger(cfg, io.Stderr)
	svc, err := connect(c.Context, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tp, stopTracing, err := startTracing(c.Context, io, "cachekeeper-changes", logger) // tracing.go
	if err != nil {
		return err
	}
	defer stopTracing()
	svc.traced(tp)
	sc.Redis, sc.Client, sc.Registerer, sc.TracerProvider = svc.redis, svc.client, reg, tp
	s, err := changes.New(sc, logger)
	if err != nil {
		return usagef("%v", err)
	}
	g, gctx := errgroup.WithContext(c.Context)
	if addr := c.String("metrics-addr"); addr != "" {
		hs, err := httpapi.New(addr, reg, func(ctx context.Context) error { return svc.redis.Ping(ctx).Err() }, logger, nil)
		if err != nil {
			return listenError("--metrics-addr", addr, err)
		}
		g.Go(func() error { return hs.Run(gctx) })
	}
	g.Go(func() error {
		err := s.Run(gctx)
		if err == nil && c.Context.Err() == nil {
			err = errors.New("change stream stopped")
		}
		return err
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if errors.Is(err, changes.ErrSetup) {
		return usagef("%v", err)
	}
	if err == nil {
		logger.Info("shut down cleanly", slog.String("reason", "interrupted"))
	}
	return err
}

func runChangesStatus(c *ucli.Context, io IO) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q (see 'cachekeeper changes status --help')", c.Args().First())
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	cfg, sc, err := changesConfig(c, io, false)
	if err != nil {
		return err
	}
	svc, err := connect(c.Context, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	sc.Redis = svc.redis
	s, err := changes.New(sc, nil)
	if err != nil {
		return usagef("%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	st, err := s.Status(ctx)
	if err != nil {
		return fmt.Errorf("read the stream's status: %w", err)
	}
	if format == "json" {
		enc := json.NewEncoder(io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	holder := st.Holder
	if holder == "" {
		holder = "(none: no replica runs `cachekeeper changes`)"
	}
	pos := st.Position
	if !st.Exists {
		pos = "(none yet: created when `cachekeeper changes` first runs)"
	}
	reported := "never"
	if !st.ReportedAt.IsZero() {
		reported = st.ReportedAt.UTC().Format(time.RFC3339) + " (" + time.Since(st.ReportedAt).Round(time.Second).String() + " ago)"
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "stream\t%s (%s)\n", st.Stream, st.Database)
	fmt.Fprintf(tw, "holder\t%s\n", holder)
	fmt.Fprintf(tw, "position\t%s\n", pos)
	fmt.Fprintf(tw, "server position\t%s\n", st.ServerPosition)
	fmt.Fprintf(tw, "lag\t%d bytes, %.3fs\n", st.LagBytes, st.LagSeconds)
	fmt.Fprintf(tw, "rate\t%.1f changes/s\n", st.ChangesPerSecond)
	if st.Database == "postgres" {
		fmt.Fprintf(tw, "slot active\t%v\n", st.SlotActive)
		fmt.Fprintf(tw, "retained WAL\t%d bytes\n", st.RetainedBytes)
	}
	fmt.Fprintf(tw, "last report\t%s\n", reported)
	return tw.Flush()
}

// checkChangeStream is config check's line about the change stream: SQLite
// has none (a failure when a cache declares changes:).
func checkChangeStream(cfg config.Config, io IO) error {
	kind, _ := cfg.Database.DriverName()
	err := cfg.CheckChangeStream()
	switch {
	case err != nil:
		fmt.Fprintf(io.Stdout, "FAIL changes: %s\n", oneLine(err.Error()))
		return usagef("%v", err)
	case kind == "sqlite":
		fmt.Fprintln(io.Stdout, "note changes: SQLite has no change stream; `cachekeeper changes` needs PostgreSQL or MySQL/MariaDB (invalidate from the application instead)")
	case cfg.HasChanges():
		fmt.Fprintf(io.Stdout, "ok   changes: followed from the %s change stream by `cachekeeper changes`\n", kind)
	}
	return nil
}
