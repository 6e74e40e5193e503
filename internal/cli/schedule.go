package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

// schedulerCommand is `cachekeeper scheduler`, the long-running process;
// scheduleCommand is `cachekeeper schedule list|run`.
func schedulerCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "scheduler",
		Usage: "enqueue the periodic jobs of the config's schedule section until interrupted; SIGHUP reloads the schedule",
		Description: "Any number of schedulers may run against one Redis: each tick of each entry is\n" +
			"enqueued once, with a task id derived from the entry and the tick time.\n" +
			"On SIGHUP the config file is read again; a valid schedule section replaces the\n" +
			"running one at the next tick, an invalid one is logged and the old one keeps running.\n" +
			"Other settings (Redis URL, log level) need a restart.",
		ArgsUsage: " ",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "metrics-addr", Usage: "address for /metrics, /healthz, /readyz (e.g. :9091); empty disables"},
		}, connFlags()...),
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usagef("unexpected argument %q (see 'cachekeeper scheduler --help')", c.Args().First())
			}
			cfg, err := loadConfig(c, io)
			if err != nil {
				return err
			}
			reload := func() (config.Config, error) { return loadConfig(c, io) }
			return runScheduler(c.Context, cfg, reload, c.String("metrics-addr"), io)
		},
	}
}

// runScheduler runs the scheduler (and its HTTP endpoints) until ctx ends,
// reloading the schedule on SIGHUP.
func runScheduler(ctx context.Context, cfg config.Config, reload func() (config.Config, error), metricsAddr string, io IO) error {
	logger := newLogger(cfg, io.Stderr)
	svc, err := connect(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s, err := scheduler.New(scheduler.Config{Entries: cfg.Schedule, KeyPrefix: cfg.KeyPrefix, Registerer: reg}, svc.redis, logger)
	if err != nil {
		return err
	}
	if len(cfg.Schedule) == 0 {
		logger.Warn("the schedule section is empty: nothing will be enqueued until a SIGHUP loads entries")
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	g, gctx := errgroup.WithContext(ctx)
	if metricsAddr != "" {
		hs, err := httpapi.New(metricsAddr, reg, func(ctx context.Context) error { return svc.redis.Ping(ctx).Err() }, logger, nil)
		if err != nil {
			return listenError("--metrics-addr", metricsAddr, err)
		}
		g.Go(func() error { return hs.Run(gctx) })
	}
	g.Go(func() error { return s.Run(gctx) })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				reloadSchedule(s, reload, logger)
			}
		}
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		logger.Info("shut down cleanly", slog.String("reason", "interrupted"))
	}
	return err
}

// reloadSchedule re-reads the configuration and hands its schedule to s. A
// bad file is one error line; the running entries stay.
func reloadSchedule(s *scheduler.Scheduler, reload func() (config.Config, error), logger *slog.Logger) {
	cfg, err := reload()
	if err == nil {
		err = s.Reload(cfg.Schedule)
	}
	if err != nil {
		logger.Error("SIGHUP: new configuration refused, the current schedule keeps running", slog.String("error", oneLine(message(err))))
		return
	}
	logger.Info("SIGHUP: schedule reloaded from the configuration", slog.Int("entries", len(cfg.Schedule)))
}

func scheduleCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "schedule",
		Usage: "list the periodic jobs of the config's schedule section, or run one now",
		Subcommands: []*ucli.Command{
			{
				Name:      "list",
				Usage:     "print each schedule entry with its next run times",
				ArgsUsage: " ",
				Flags: append([]ucli.Flag{
					outputFlag(),
					&ucli.IntFlag{Name: "next", Value: 3, Usage: "how many upcoming run times to show per entry (1-100)"},
				}, connFlags()...),
				Action: func(c *ucli.Context) error { return runScheduleList(c, io) },
			},
			{
				Name:      "run",
				Usage:     "enqueue a schedule entry now (its id never collides with a regular tick)",
				ArgsUsage: "NAME",
				Flags:     append([]ucli.Flag{outputFlag()}, connFlags()...),
				Action:    func(c *ucli.Context) error { return runScheduleRun(c, io) },
			},
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usagef("unknown schedule command %q (commands: list, run)", c.Args().First())
			}
			return usagef("name a command: cachekeeper schedule list|run (see 'cachekeeper schedule --help')")
		},
	}
}

// scheduleJSON is one entry in `schedule list -o json`.
type scheduleJSON struct {
	Name     string         `json:"name"`
	Schedule string         `json:"schedule"`
	TimeZone string         `json:"time_zone"`
	Kind     string         `json:"kind"`
	Args     map[string]any `json:"args,omitempty"`
	Queue    string         `json:"queue"`
	Timeout  string         `json:"timeout,omitempty"`
	CatchUp  string         `json:"catch_up"`
	Series   string         `json:"series"`
	Next     []time.Time    `json:"next"`
}

func runScheduleList(c *ucli.Context, io IO) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q (see 'cachekeeper schedule list --help')", c.Args().First())
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	n := c.Int("next")
	if n < 1 || n > 100 {
		return usagef("--next must be between 1 and 100, got %d", n)
	}
	cfg, err := loadConfig(c, io)
	if err != nil {
		return err
	}
	entries, err := scheduler.ParseEntries(cfg.Schedule)
	if err != nil {
		return fmt.Errorf("%w: %v", config.ErrInvalid, err)
	}
	if format == "json" {
		out := make([]scheduleJSON, 0, len(entries))
		for _, e := range entries {
			j := scheduleJSON{
				Name: e.Name, Schedule: e.Schedule, TimeZone: zoneName(e.TimeZone), Kind: e.Kind, Args: e.Args,
				Queue: e.QueueName, CatchUp: catchUpName(e.CatchUp), Series: e.Series, Next: e.Next(n),
			}
			if e.Timeout > 0 {
				j.Timeout = e.Timeout.String()
			}
			out = append(out, j)
		}
		enc := json.NewEncoder(io.Stdout)
		for _, j := range out {
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(io.Stdout, "no entries in the schedule section of the configuration")
		return err
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCHEDULE\tTIME ZONE\tKIND\tQUEUE\tCATCH UP\tNEXT RUNS")
	for _, e := range entries {
		next := e.Next(n)
		times := make([]string, len(next))
		for i, t := range next {
			times[i] = t.Format(time.RFC3339)
		}
		if len(times) == 0 {
			times = []string{"(none)"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Schedule, zoneName(e.TimeZone), e.Kind, e.QueueName,
			catchUpName(e.CatchUp), strings.Join(times, ", "))
	}
	return tw.Flush()
}

func runScheduleRun(c *ucli.Context, io IO) error {
	switch c.NArg() {
	case 0:
		return usagef("name the entry to run: cachekeeper schedule run NAME (see 'cachekeeper schedule list')")
	case 1:
	default:
		if strings.HasPrefix(c.Args().Get(1), "-") {
			return usagef("flags go before the entry name: cachekeeper schedule run [flags] %s", c.Args().First())
		}
		return usagef("schedule run takes one entry name, got %d arguments", c.NArg())
	}
	name := c.Args().First()
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c, io)
	if err != nil {
		return err
	}
	known := make([]string, 0, len(cfg.Schedule))
	found := false
	for _, e := range cfg.Schedule {
		known = append(known, e.Name)
		found = found || e.Name == name
	}
	if !found {
		if len(known) == 0 {
			return usagef("unknown schedule entry %q: the schedule section of the configuration is empty", name)
		}
		return usagef("unknown schedule entry %q (entries: %s)", name, strings.Join(known, ", "))
	}
	svc, err := connect(c.Context, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	s, err := scheduler.New(scheduler.Config{Entries: cfg.Schedule, KeyPrefix: cfg.KeyPrefix}, svc.redis, nil)
	if err != nil {
		return err
	}
	info, err := s.RunNow(c.Context, name)
	if err != nil {
		if errors.Is(err, scheduler.ErrUnknownEntry) {
			return usagef("%v", err)
		}
		return err
	}
	return printTaskInfo(io, format, "enqueued", info)
}

func zoneName(tz string) string {
	if tz == "" {
		return "UTC"
	}
	return tz
}

func catchUpName(c string) string {
	if c == "" {
		return scheduler.CatchUpNone
	}
	return c
}
