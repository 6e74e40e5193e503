package cli

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	ucli "github.com/urfave/cli/v2"
)

func benchWarmCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "warm",
		Usage: "cache warming from SQL: one task per key, coalesced batches and warm_all, with a same-run ceiling",
		Description: "Seeds --rows three-field rows (id, email, name) in --database-url (a fresh PostgreSQL schema, or a\n" +
			"fresh table on MySQL/SQLite; dropped afterwards; default: a temporary SQLite file) and measures keys/s\n" +
			"on cachekeeper's real worker:\n" +
			"  warm_per_key    --per-key-rows cache:warm tasks of one id each (naive cache-aside as a job)\n" +
			"  warm_coalesced  --rows single-id WarmCache calls (ids left pending, turned into batched jobs by the\n" +
			"                  worker's coalescer; ratio vs per key)\n" +
			"  warm_all        one cache:warm_all over the table, fenced (ratio vs per key), with ceiling_per_s:\n" +
			"                  the same keyset pages written with plain pipelined DEL+HSET+EXPIRE, no fence\n" +
			"warm_per_key and warm_coalesced drain a backlog made before the worker starts, timed from its start\n" +
			"to the last key written (the coalescer turns the backlog into jobs before the servers first poll);\n" +
			"warm_coalesced's extra.running_worker_per_s is the same calls made while the worker runs, timed\n" +
			"from the first call (bound by this process's 8 callers, extra.running_calls_per_s).\n" +
			"warm_all and the ceiling alternate for --rounds; medians are printed.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "rows", Aliases: []string{"n"}, Value: 100000, Usage: "rows in the table (warm_all, ceiling, coalesced)"},
			&ucli.IntFlag{Name: "per-key-rows", Usage: "keys of the one-task-per-key scenario (default min(--rows, 5000))"},
			&ucli.StringFlag{Name: "database-url", Usage: "postgres://..., mysql://... or sqlite://file.db (default: --config's database.url, else a temporary SQLite file)"},
			&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file whose database.url is used when --database-url is not given"},
			&ucli.IntFlag{Name: "servers", Usage: "the worker's asynq servers (default: the worker's default)"},
			&ucli.IntFlag{Name: "concurrency", Usage: "the worker's concurrency (default: the worker's default)"},
			&ucli.IntFlag{Name: "coalesce-max-size", Usage: "warm.coalesce_max_size (default: the configuration's)"},
			&ucli.IntFlag{Name: "rounds", Value: 3, Usage: "alternating warm_all / ceiling rounds; medians are printed"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			for _, name := range []string{"per-key-rows", "servers", "concurrency", "coalesce-max-size"} {
				if c.IsSet(name) && c.Int(name) < 1 {
					return usagef("--%s must be at least 1, got %d", name, c.Int(name))
				}
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
				dir, err := os.MkdirTemp("", "ckbench-warm")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				db.URL = "sqlite://" + filepath.Join(dir, "bench.db")
			}
			url, _, closeRedis, err := benchRedis(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			results, err := bench.Warm(c.Context, bench.WarmOptions{
				RedisURL: url, Database: db, Rows: c.Int("rows"), PerKeyRows: c.Int("per-key-rows"),
				Servers: c.Int("servers"), Concurrency: c.Int("concurrency"), CoalesceMaxSize: c.Int("coalesce-max-size"),
				Rounds: c.Int("rounds"), Logger: logger,
				WorkerLogger: slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return benchError(err)
			}
			return printResults(io, format, results)
		},
	}
}
