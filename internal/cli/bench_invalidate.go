package cli

import (
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchInvalidateCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "invalidate",
		Usage: "pattern invalidation (SCAN + batched UNLINK, plain and fenced) against one DEL per round trip",
		Description: "Scenario invalidate_pattern: --keys three-field hashes are deleted by cache:invalidate_pattern's code\n" +
			"(SCAN MATCH, UNLINK per batch of 1,000), against a baseline that SCANs and deletes one key per round\n" +
			"trip (--baseline-keys of them), in alternating --rounds; medians are printed (keys/s).\n" +
			"Scenario invalidate_pattern_fenced: the same keys shaped like a declared cache's keys: pattern\n" +
			"invalidation advances that cache's fence once before the walk, so that no in-flight warm writes\n" +
			"them back, then deletes them like any other key.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "keys", Aliases: []string{"n"}, Value: 200000, Usage: "keys per cachekeeper run"},
			&ucli.IntFlag{Name: "baseline-keys", Usage: "keys per baseline run (default min(--keys, 20000))"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating rounds; medians are printed"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"keys", "rounds"} {
				if c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
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
			results, err := bench.Invalidate(c.Context, rdb, bench.InvalidateOptions{
				Keys: c.Int("keys"), BaselineKeys: c.Int("baseline-keys"), Rounds: c.Int("rounds"),
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, results)
		},
	}
}
