package cli

import (
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	ucli "github.com/urfave/cli/v2"
)

func benchChangesCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "changes",
		Usage: "invalidation from the database's change stream against the application pushing invalidations to the inbox",
		Description: "Seeds two tables of --rows rows in --database-url (default: a private PostgreSQL cluster with\n" +
			"wal_level=logical started from initdb in a temporary directory, removed afterwards), one followed by\n" +
			"the change stream (cache user), one not (cache user_app), both served by one real worker:\n" +
			"  changes_bulk     one UPDATE of every row; rows/s from the commit to the last id's invalidation event,\n" +
			"                   p50/p99 lag per row; the baseline is the application pushing cache:invalidate entries\n" +
			"                   of 1000 ids onto the inbox after its commit; --rounds alternating rounds, medians\n" +
			"  changes_trickle  --trickle-rate single-row UPDATE transactions per second for --trickle-for; p50/p99\n" +
			"                   lag per row (baseline: one inbox entry after each commit)",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "rows", Aliases: []string{"n"}, Value: 50000, Usage: "rows per table and per bulk UPDATE"},
			&ucli.StringFlag{Name: "database-url", Usage: "postgres://... (wal_level=logical, REPLICATION role) or mysql://... (binlog_format=ROW); default: a private PostgreSQL"},
			&ucli.IntFlag{Name: "trickle-rate", Value: 200, Usage: "single-row transactions per second of the trickle (1-5000)"},
			&ucli.DurationFlag{Name: "trickle-for", Value: 5 * time.Second, Usage: "how long the trickle runs"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating bulk rounds; medians are printed"},
			&ucli.IntFlag{Name: "batch-size", Value: 5000, Usage: "the stream's ids per cache:invalidate job (as cachekeeper changes --batch-size)"},
			&ucli.BoolFlag{Name: "sync-standby", Usage: "give the private PostgreSQL a streaming standby and make it synchronous (every commit waits for its answer)"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"rows", "rounds", "trickle-rate", "batch-size"} {
				if c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			db := config.DatabaseConfig{URL: c.String("database-url")}
			if db.URL == "" {
				logger.Info("bench changes: starting a private PostgreSQL with wal_level=logical")
				pg, err := testenv.StartPostgres()
				if err != nil {
					return fmt.Errorf("start a private PostgreSQL (or pass --database-url): %w", err)
				}
				defer pg.Stop()
				db.URL = pg.URL("postgres")
				if c.Bool("sync-standby") {
					logger.Info("bench changes: starting a synchronous standby")
					standby, err := pg.StartStandby("ckstandby")
					if err != nil {
						return fmt.Errorf("start a synchronous standby: %w", err)
					}
					defer standby.Stop()
				}
			} else if c.Bool("sync-standby") {
				return usagef("--sync-standby needs the private PostgreSQL: drop --database-url")
			}
			url, _, closeRedis, err := benchRedis(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			results, err := bench.Changes(c.Context, bench.ChangesOptions{
				RedisURL: url, Database: db, Rows: c.Int("rows"), TrickleRate: c.Int("trickle-rate"),
				TrickleFor: c.Duration("trickle-for"), Rounds: c.Int("rounds"), BatchSize: c.Int("batch-size"), Logger: logger,
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, results)
		},
	}
}
