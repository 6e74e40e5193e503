package cli

import (
	"log/slog"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchStampedeCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "stampede",
		Usage: "the application's read path: a burst of readers of one missing key, the slow-fill race and refresh-ahead, against the guide's fill",
		Description: "Seeds a users table in a fresh schema of --database-url (PostgreSQL; dropped afterwards); the cache's query\n" +
			"bumps a sequence, so db_queries are counted by the database. Scenarios:\n" +
			"  naive          --readers concurrent readers of one missing key with the FastAPI guide's fill (HGETALL; on a\n" +
			"                 miss SELECT, then HSET+PEXPIRE), --bursts times: db_queries per burst (median, max), readers'\n" +
			"                 p50_ms/p99_ms, cold_read_ms (one reader alone, median of 5) and p99_over_cold_read. Then the\n" +
			"                 slow-fill race: --race-keys keys read with a --fill-pause between read and write while each\n" +
			"                 key's row is updated and invalidated at a random moment within --race-window: stale_keys.\n" +
			"  leases         the same through the read path (package cache), each reader acting as its own process\n" +
			"                 (leases across processes, no single flight in the process); bursts alternate with naive's;\n" +
			"                 hit_burst_p99_ms is the same readers on the key once filled (what a burst of hits costs).\n" +
			"  refresh_ahead  one key read --read-rate times a second for --duration, its TTL --ttl, with the worker's\n" +
			"                 refresh_ahead on, beside the same reads of a cache without it: misses_at_expiry (reads after\n" +
			"                 the first that were not hits) against baseline_misses_at_expiry.\n" +
			"Goals: leases db_queries <= 1 per burst, p99_over_cold_read <= 2, stale_keys 0; refresh_ahead misses_at_expiry 0.",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "database-url", Usage: "PostgreSQL database (postgres://...; default: --config's database.url)"},
			&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file whose database.url is used when --database-url is not given"},
			&ucli.IntFlag{Name: "readers", Aliases: []string{"n"}, Value: 200, Usage: "concurrent readers per burst"},
			&ucli.IntFlag{Name: "bursts", Value: 5, Usage: "bursts per side, alternating; medians are printed"},
			&ucli.DurationFlag{Name: "query-delay", Usage: "added to every query inside the database (pg_sleep), e.g. 50ms"},
			&ucli.DurationFlag{Name: "fill-pause", Value: bench.DefaultFillPause, Usage: "the slow fill's pause between the database read and the cache write"},
			&ucli.IntFlag{Name: "race-keys", Value: 200, Usage: "keys of the slow-fill race"},
			&ucli.DurationFlag{Name: "race-window", Value: bench.DefaultRaceWindow, Usage: "each raced row is updated and invalidated at a random moment within this window"},
			&ucli.DurationFlag{Name: "ttl", Value: bench.DefaultStampedeTTL, Usage: "TTL of refresh_ahead's hot key"},
			&ucli.IntFlag{Name: "read-rate", Value: 20, Usage: "reads per second of refresh_ahead's hot key"},
			&ucli.DurationFlag{Name: "duration", Usage: "how long refresh_ahead's key is read (default 3.5 TTLs)"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			db := config.DatabaseConfig{URL: c.String("database-url")}
			if db.URL == "" && c.String("config") != "" {
				cfg, err := config.Load(c.String("config"), io.Env)
				if err != nil {
					return err
				}
				db.URL = cfg.Database.URL
			}
			if db.URL == "" {
				return usagef("bench stampede needs PostgreSQL: pass --database-url postgres://user@host:5432/db (a fresh schema is created and dropped)")
			}
			if _, err := db.DriverName(); err != nil {
				return usagef("--database-url: %v", err)
			}
			url, _, closeRedis, err := benchRedis(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			results, err := bench.Stampede(c.Context, bench.StampedeOptions{
				RedisURL: url, Database: db, Readers: c.Int("readers"), Bursts: c.Int("bursts"),
				QueryDelay: c.Duration("query-delay"), FillPause: c.Duration("fill-pause"), RaceKeys: c.Int("race-keys"),
				RaceWindow: c.Duration("race-window"), TTL: c.Duration("ttl"), ReadRate: c.Int("read-rate"),
				Duration: c.Duration("duration"), Logger: logger,
				WorkerLogger: slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, results)
		},
	}
}
