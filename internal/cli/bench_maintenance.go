package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchMaintenanceCommand(io IO) *ucli.Command {
	def := config.Default().Pace
	return &ucli.Command{
		Name:  "maintenance",
		Usage: "an application loop's latency alone and during each maintenance kind, unpaced and paced",
		Description: "An application-style loop (HGETALL of small hashes at --app-rate requests/s, 4 goroutines, in a\n" +
			"process of its own: this binary's hidden `bench app-load`) runs all along. For each kind (--kinds: " + strings.Join(bench.MaintenanceKinds, ", ") + ")\n" +
			"and pacing (unpaced, then paced by the worker's default `pace:` settings unless --latency-budget is given),\n" +
			"--keys keys are seeded, the loop is measured alone for --baseline, then during the run of the worker's own\n" +
			"code. Printed per run: the loop's p50/p99 alone (baseline) and during, RATIO = during p99 / baseline p99\n" +
			"(the goal: paced runs within 2x), and the maintenance's keys/s (medians over --rounds). Each kind also\n" +
			"runs unpaced and paced with the loop paused (an idle server): IDLE KEYS/S and IDLE PACED/UNPACED (the goal:\n" +
			"0.8 or more). Paced pattern invalidation runs once more with the loop stopped half-way: keys/s before and after.\n" +
			"With -o json one object per run: scenario, ratio, cachekeeper_per_s (keys/s) and extra figures.\n" +
			"Run it on a quiet machine: other processes' load shows up in every percentile.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "keys", Aliases: []string{"n"}, Value: 1000000, Usage: "keys per maintenance run"},
			&ucli.IntFlag{Name: "app-rate", Value: 2000, Usage: "application loop requests per second"},
			&ucli.DurationFlag{Name: "baseline", Value: 2e9, Usage: "how long the application loop is measured alone before each run"},
			&ucli.IntFlag{Name: "rounds", Value: 1, Usage: "rounds per kind (unpaced then paced each); medians are printed"},
			&ucli.StringSliceFlag{Name: "kinds", Usage: "maintenance kinds to run (default all: " + strings.Join(bench.MaintenanceKinds, ", ") + ")"},
			&ucli.DurationFlag{Name: "latency-budget", Value: def.LatencyBudget, Usage: "pace.latency_budget of the paced runs"},
			&ucli.BoolFlag{Name: "app-in-process", Usage: "run the application loop in this process instead of a process of its own"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"keys", "app-rate", "rounds"} {
				if c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
			}
			if c.Duration("baseline") < 100e6 {
				return usagef("--baseline must be at least 100ms, got %s", c.Duration("baseline"))
			}
			pc := def
			pc.LatencyBudget = c.Duration("latency-budget")
			cfg := config.Default()
			cfg.Pace = pc
			if err := cfg.Validate(); err != nil {
				return usagef("--latency-budget: %s", strings.TrimPrefix(err.Error(), config.ErrInvalid.Error()+": "))
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			rdb, url, closeRedis, err := benchClient(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			opts := bench.MaintenanceOptions{
				Keys: c.Int("keys"), AppRate: c.Int("app-rate"), Baseline: c.Duration("baseline"), Rounds: c.Int("rounds"),
				Kinds: c.StringSlice("kinds"), Pace: &pc, Logger: logger,
			}
			var app redis.UniversalClient
			if c.Bool("app-in-process") {
				if app, err = (&config.RedisConfig{URL: url}).NewClient(); err != nil {
					return err
				}
				defer app.Close()
			} else {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("bench maintenance: find this binary to run the application loop: %w", err)
				}
				opts.AppCommand = []string{exe, "bench", "app-load", "--redis-url", url, "--app-rate", strconv.Itoa(c.Int("app-rate"))}
			}
			results, err := bench.Maintenance(c.Context, rdb, app, opts)
			if err != nil {
				return benchError(err)
			}
			if format == "json" {
				return printResults(io, format, results)
			}
			return printMaintenance(io, results)
		},
	}
}

// printMaintenance prints the maintenance runs as one table.
func printMaintenance(io IO, results []bench.Result) error {
	tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tBASE P50 ms\tBASE P99 ms\tDURING P50 ms\tDURING P99 ms\tRATIO (P99)\tKEYS/S\tIDLE KEYS/S\tIDLE PACED/UNPACED")
	var stops []bench.Result
	for _, r := range results {
		if _, ok := r.Extra["keys_per_s_after_stop"]; ok {
			stops = append(stops, r)
			continue
		}
		idle, ofUnpaced := "-", "-"
		if v, ok := r.Extra["idle_keys_per_s"].(float64); ok {
			idle = formatNumber(v)
		}
		if v, ok := r.Extra["idle_of_unpaced"].(float64); ok {
			ofUnpaced = fmt.Sprintf("%.2fx", v)
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t%v\t%v\t%.2fx\t%s\t%s\t%s\n", r.Scenario, r.Extra["baseline_p50_ms"], r.Extra["baseline_p99_ms"],
			r.Extra["during_p50_ms"], r.Extra["during_p99_ms"], r.Ratio, formatNumber(r.CachekeeperPerS), idle, ofUnpaced)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	for _, r := range stops {
		fmt.Fprintf(tw, "\n%s: paced keys/s %s while the application loop ran, %s after it stopped (%.2fx)\n", r.Scenario,
			formatNumber(r.BaselinePerS), formatNumber(r.CachekeeperPerS), r.Ratio)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// benchAppLoadCommand is the application loop of `bench maintenance` as a
// process of its own (hidden: the benchmark starts it). It writes one line
// per request ("<start unix ns> <latency ns>") and reads "pause"/"resume"
// lines; the end of its input ends it.
func benchAppLoadCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:   "app-load",
		Usage:  "the application loop of bench maintenance, as a process of its own (started by it)",
		Hidden: true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "redis-url", Required: true, Usage: "the Redis the benchmark runs on"},
			&ucli.IntFlag{Name: "app-rate", Value: 2000, Usage: "requests per second"},
		},
		Action: func(c *ucli.Context) error {
			rc := config.RedisConfig{URL: c.String("redis-url")}
			rdb, err := rc.NewClient()
			if err != nil {
				return usagef("--redis-url: %v", err)
			}
			defer rdb.Close()
			return benchError(bench.AppLoad(c.Context, rdb, c.Int("app-rate"), c.App.Reader, io.Stdout))
		},
	}
}
