package cli

import (
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchInboxCommand(io IO) *ucli.Command {
	def := config.Default().Inbox
	return &ucli.Command{
		Name:  "inbox",
		Usage: "inbox bridge drain rate and push-to-enqueue latency, against the Go client's Enqueue of the same jobs",
		Description: "Baseline: --entries cache:invalidate jobs enqueued by the Go client (tasks.Client, --enqueuers goroutines).\n" +
			"Drain: the same jobs as JSON entries LPUSHed by a connection of their own (as a producer in another\n" +
			"language would) onto a fresh inbox, then drained by the worker's bridge: entries/s from the bridge's\n" +
			"start until every job is enqueued (cachekeeper_per_s; ratio = drain / Go client).\n" +
			"Latency: with the bridge running, one LPUSH at a time at --latency-rate for 2 s, each entry timed from\n" +
			"its push to the return of its enqueue (latency_p50_ms, latency_p99_ms). Sides alternate --rounds times;\n" +
			"medians are printed. Fresh queue and inbox names are used and deleted; nothing is flushed.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "entries", Aliases: []string{"n"}, Value: 50000, Usage: "jobs per side and round"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating rounds; medians are printed"},
			&ucli.IntFlag{Name: "latency-rate", Value: 1000, Usage: "entries/s pushed in the latency phase"},
			&ucli.IntFlag{Name: "batch-size", Value: def.BatchSize, Usage: "inbox.batch_size of the bridge"},
			&ucli.IntFlag{Name: "enqueuers", Value: def.Enqueuers, Usage: "inbox.enqueuers of the bridge, and the Go client's goroutines"},
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
				BatchSize: c.Int("batch-size"), Enqueuers: c.Int("enqueuers"), Logger: logger,
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, []bench.Result{res})
		},
	}
}
