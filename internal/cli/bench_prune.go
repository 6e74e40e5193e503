package cli

import (
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchPruneCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "prune",
		Usage: "rate-limit pruning (ratelimit:prune's script per batch) against one key per round trip",
		Description: "Scenario ratelimit_prune: --keys sliding-window sorted sets of --entries members each (half of\n" +
			"them older than the window, scores in Unix seconds, some sets without TTL) are pruned by\n" +
			"ratelimit:prune's code (SCAN, one Lua script per batch, server TIME), against a baseline that\n" +
			"prunes one key per round trip (--baseline-keys of them), in alternating --rounds; medians are\n" +
			"printed (keys/s). extra.scan_pipeline_per_s is redis-cli's way (SCAN piped into pipelined\n" +
			"ZREMRANGEBYSCORE, no TTL repair) measured in the same run.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "keys", Aliases: []string{"n"}, Value: 100000, Usage: "rate-limit keys per run"},
			&ucli.IntFlag{Name: "entries", Value: 20, Usage: "members per key"},
			&ucli.IntFlag{Name: "baseline-keys", Usage: "keys per baseline run (default min(--keys, 20000))"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating rounds; medians are printed"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"keys", "entries", "rounds"} {
				if c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
			}
			if c.Int("baseline-keys") < 0 {
				return usagef("--baseline-keys must not be negative")
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			rdb, _, closeRedis, err := benchClient(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			res, err := bench.Prune(c.Context, rdb, bench.PruneOptions{
				Keys: c.Int("keys"), Entries: c.Int("entries"), BaselineKeys: c.Int("baseline-keys"),
				Rounds: c.Int("rounds"), Logger: logger,
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, []bench.Result{res})
		},
	}
}
