package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

// benchSubcommands are the scenarios of `cachekeeper bench`. A new scenario
// is one line here plus its command in its own file; it prints with
// printResults and gets its Redis from benchRedis.
var benchSubcommands = []func(IO) *ucli.Command{
	benchQueueCommand,
	benchInvalidateCommand,
	benchWarmCommand,
	benchPruneCommand,
	benchChangesCommand,
	benchMaintenanceCommand,
	benchInboxCommand,
	benchConsistencyCommand,
	benchStampedeCommand,
	benchAppLoadCommand,
}

func benchCommand(io IO) *ucli.Command {
	cmd := &ucli.Command{
		Name:  "bench",
		Usage: "measure cachekeeper against a baseline in the same run, on the same Redis",
		Description: "Every scenario prints a table, or with -o json one JSON object per scenario:\n" +
			"scenario, cachekeeper_per_s, baseline_per_s, ratio (cachekeeper/baseline), baseline (what it is),\n" +
			"ceiling_per_s where a ceiling is measured, and extra figures.\n" +
			"Without --redis-url a private redis-server is started on a loopback port and stopped afterwards;\n" +
			"with it, the benchmark uses fresh queue names and deletes them: it never flushes anything.\n" +
			"The machine's noise matters: run several times and compare medians.",
	}
	for _, sub := range benchSubcommands {
		cmd.Subcommands = append(cmd.Subcommands, sub(io))
	}
	cmd.Action = func(c *ucli.Context) error {
		if c.Args().Present() {
			names := make([]string, 0, len(cmd.Subcommands))
			for _, s := range cmd.Subcommands {
				names = append(names, s.Name)
			}
			return usagef("unknown bench scenario %q (scenarios: %s)", c.Args().First(), strings.Join(names, ", "))
		}
		return ucli.ShowSubcommandHelp(c)
	}
	return cmd
}

// benchFlags are the flags every bench scenario takes.
func benchFlags() []ucli.Flag {
	return []ucli.Flag{
		outputFlag(),
		&ucli.StringFlag{Name: "redis-url", Usage: "use this Redis instead of a private redis-server (nothing is flushed; fresh queue names are used and deleted)"},
		&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "progress lines on stderr: debug, info, warn or error"},
	}
}

// benchLogger returns the progress logger (stderr, at --log-level).
func benchLogger(c *ucli.Context, io IO) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q must be debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// benchRedis returns the Redis URL a scenario uses: --redis-url, or a private
// redis-server that closeFn stops. private reports the latter (figures such
// as idle command rates are then exact).
func benchRedis(c *ucli.Context, logger *slog.Logger, opts ...bench.RedisOption) (url string, private bool, closeFn func(), err error) {
	if u := c.String("redis-url"); u != "" {
		rc := config.RedisConfig{URL: u}
		if _, err := rc.Options(); err != nil {
			return "", false, nil, usagef("--redis-url: %v", err)
		}
		return u, false, func() {}, nil
	}
	srv, err := bench.StartRedis(c.Context, opts...)
	if errors.Is(err, bench.ErrNoRedisServer) {
		return "", false, nil, usagef("redis-server is not on PATH: install it (apt-get install redis-server) or pass --redis-url redis://host:6379/0")
	}
	if err != nil {
		return "", false, nil, err
	}
	logger.Info("private redis-server started", slog.String("url", srv.URL))
	return srv.URL, true, srv.Close, nil
}

// benchError maps a scenario's option error to a usage error (exit code 2).
func benchError(err error) error {
	if errors.Is(err, bench.ErrInvalidOptions) {
		return usagef("%s", strings.TrimPrefix(err.Error(), bench.ErrInvalidOptions.Error()+": "))
	}
	return err
}

func benchQueueCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "queue",
		Usage: "throughput of no-op tasks and pickup latency on an idle queue, against bare asynq",
		Description: "Scenario queue: --tasks no-op tasks are enqueued (8 producers), then processed by cachekeeper's\n" +
			"worker (its real runtime: --servers asynq servers, the fast lane, middleware with logging and\n" +
			"metrics), and the same by one bare asynq server without middleware, in alternating --rounds;\n" +
			"the medians are printed. cachekeeper_per_s and baseline_per_s are processing rates (tasks/s,\n" +
			"first handler start to last handler end); extra has the enqueue rates and, on a private\n" +
			"redis-server, the CPU per task of this process and Redis together (steadier than rates on a\n" +
			"busy machine).\n" +
			"Scenario pickup_latency: single tasks sent one at a time to the idle critical queue, timed from\n" +
			"the enqueue call to the handler's start (p50_ms, p99_ms over --samples), then the same for bare\n" +
			"asynq with default settings (--baseline-samples, on 10 queues in parallel as each takes about a\n" +
			"second); idle_redis_cmds_per_s is what an idle worker costs Redis (INFO commandstats deltas,\n" +
			"commands inside Lua scripts included). cachekeeper_per_s and baseline_per_s are 1000/p50, so\n" +
			"ratio is how many times sooner cachekeeper picks a job up at the median.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "tasks", Aliases: []string{"n"}, Value: 20000, Usage: "no-op tasks per side and round"},
			&ucli.IntFlag{Name: "servers", Usage: "cachekeeper's asynq servers", DefaultText: strconv.Itoa(config.Default().Worker.Servers) + ", the worker's default"},
			&ucli.IntFlag{Name: "concurrency", Usage: "cachekeeper's concurrency, and the baseline server's", DefaultText: strconv.Itoa(config.Default().Worker.Concurrency) + ", the worker's default"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating rounds of the queue scenario; medians are printed"},
			&ucli.IntFlag{Name: "samples", Value: 300, Usage: "pickups measured on cachekeeper's idle critical queue"},
			&ucli.IntFlag{Name: "baseline-samples", Value: 60, Usage: "pickups measured on bare asynq (about 1 s each, 10 in parallel)"},
			&ucli.BoolFlag{Name: "single-queue", Usage: "give cachekeeper's worker one queue like the baseline, instead of its default critical/default/low layout with the fast lane"},
			&ucli.BoolFlag{Name: "pickup", Value: true, Usage: "also run the pickup_latency scenario (--pickup=false skips it)"},
			&ucli.BoolFlag{Name: "unix-socket", Usage: "start the private redis-server on a unix socket instead of a loopback port"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"servers", "concurrency"} {
				if c.IsSet(name) && c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			var ropts []bench.RedisOption
			if c.Bool("unix-socket") {
				ropts = append(ropts, bench.OnUnixSocket())
			}
			url, private, closeRedis, err := benchRedis(c, logger, ropts...)
			if err != nil {
				return err
			}
			defer closeRedis()
			workerLevel := slog.LevelWarn
			if logger.Enabled(c.Context, slog.LevelDebug) {
				workerLevel = slog.LevelDebug
			}
			opts := bench.QueueOptions{
				RedisURL: url, Private: private, Tasks: c.Int("tasks"), Servers: c.Int("servers"),
				Concurrency: c.Int("concurrency"), Rounds: c.Int("rounds"), Samples: c.Int("samples"),
				BaselineSamples: c.Int("baseline-samples"), SingleQueue: c.Bool("single-queue"), Logger: logger,
				WorkerLogger: slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: workerLevel})),
			}
			scenarios := []func(context.Context, bench.QueueOptions) (bench.Result, error){bench.Queue}
			if c.Bool("pickup") {
				scenarios = append(scenarios, bench.PickupLatency)
			}
			var results []bench.Result
			for _, run := range scenarios {
				r, err := run(c.Context, opts)
				if err != nil {
					return benchError(err)
				}
				results = append(results, r)
			}
			return printResults(io, format, results)
		},
	}
}

// printResults prints scenario results: with format "json" one JSON object
// per line, otherwise a table and one line of extra figures per scenario.
func printResults(io IO, format string, results []bench.Result) error {
	if format == "json" {
		enc := json.NewEncoder(io.Stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("write results: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tCACHEKEEPER\tBASELINE\tRATIO\tCEILING\tBASELINE IS")
	for _, r := range results {
		ceiling := "-"
		if r.CeilingPerS > 0 {
			ceiling = formatNumber(r.CeilingPerS) + "/s"
		}
		ours, base := formatNumber(r.CachekeeperPerS)+"/s", formatNumber(r.BaselinePerS)+"/s"
		// A latency scenario's rates are 1000/p50; its row gives the p50 itself.
		if p50, ok := r.Extra["p50_ms"].(float64); ok {
			if bp50, ok := r.Extra["baseline_p50_ms"].(float64); ok {
				ours, base = fmt.Sprintf("%s ms p50", strconv.FormatFloat(p50, 'f', -1, 64)), fmt.Sprintf("%s ms p50", strconv.FormatFloat(bp50, 'f', -1, 64))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t%s\t%s\n", r.Scenario, ours, base, r.Ratio, ceiling, r.Baseline)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	for _, r := range results {
		if len(r.Extra) == 0 {
			continue
		}
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%s", k, formatExtra(r.Extra[k])))
		}
		if _, err := fmt.Fprintf(io.Stdout, "%s: %s\n", r.Scenario, strings.Join(parts, " ")); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

// formatNumber prints a rate with thousands separators and one decimal below 100.
func formatNumber(v float64) string {
	if math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func formatExtra(v any) string {
	switch x := v.(type) {
	case string:
		if strings.ContainsAny(x, " ,=") {
			return strconv.Quote(x)
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}
