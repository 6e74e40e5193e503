package cli

import (
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchInboxCommand(io IO) *ucli.Command {
	def := config.Default().Inbox
	return &ucli.Command{
		Name:  "inbox",
		Usage: "single-id invalidations through the inbox, to the key deleted, against the Go client's Invalidate",
		Description: "Both sides run the worker's inbox bridge and coalesced invalidation on a fresh key prefix and cache.\n" +
			"Baseline: --entries ids invalidated by the Go client (tasks.Client.Invalidate, one id per call,\n" +
			"--enqueuers goroutines): ids/s from the first call until every key is deleted.\n" +
			"Inbox: as many single-id cache:invalidate JSON entries LPUSHed in pipelines of 1000 by a connection of\n" +
			"their own (as a producer in another language would): ids/s from the first push until every key is\n" +
			"deleted (cachekeeper_per_s; ratio = inbox / Go client).\n" +
			"Latency: one LPUSH at a time at --latency-rate for 2 s, each timed from its push to the return of the\n" +
			"fenced delete of its key (latency_p50_ms, latency_p99_ms). Sides alternate --rounds times; medians are\n" +
			"printed. Every key of a round is deleted afterwards; nothing is flushed.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "entries", Aliases: []string{"n"}, Value: 20000, Usage: "single-id invalidations per side and round"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating rounds; medians are printed"},
			&ucli.IntFlag{Name: "latency-rate", Value: 5000, Usage: "entries/s pushed in the latency phase"},
			&ucli.IntFlag{Name: "batch-size", Value: def.BatchSize, Usage: "inbox.batch_size of the bridge"},
			&ucli.IntFlag{Name: "enqueuers", Value: def.Enqueuers, Usage: "inbox.enqueuers of the bridge, and the Go client's goroutines"},
			&ucli.DurationFlag{Name: "window", Value: config.Default().Invalidate.CoalesceWindow, Usage: "invalidate.coalesce_window of the coalesced invalidation"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"entries", "rounds", "latency-rate", "batch-size", "enqueuers"} {
				if c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
			}
			if c.Duration("window") < 0 || c.Duration("window") > time.Second {
				return usagef("--window must be between 0 and 1s, got %s", c.Duration("window"))
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			rdb, producer, closeRedis, err := benchClients(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			res, err := bench.Inbox(c.Context, rdb, producer, bench.InboxOptions{
				Entries: c.Int("entries"), Rounds: c.Int("rounds"), LatencyRate: c.Int("latency-rate"),
				BatchSize: c.Int("batch-size"), Enqueuers: c.Int("enqueuers"), Window: c.Duration("window"), Logger: logger,
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, []bench.Result{res})
		},
	}
}
