package cli

import (
	"cmp"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/devmode"
	ucli "github.com/urfave/cli/v2"
)

func devCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "dev",
		Usage: "run worker and a demo producer on embedded Redis and SQLite (no services needed) until Ctrl-C",
		Description: "Starts an in-process Redis (its address is printed, so redis-cli can look inside),\n" +
			"an SQLite database seeded with a users table, the worker, and a producer that enqueues\n" +
			"demo jobs every --interval and prints what happened. The asynqmon UI and the worker's\n" +
			"HTTP endpoints are served on --http-addr (loopback only) and their URLs printed. --redis-url / --database-url use\n" +
			"real services instead (the users table is created there only if it does not exist).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "use the Redis and database of this YAML config file instead of the embedded ones (flags win)"},
			&ucli.StringFlag{Name: "redis-url", Usage: "use this Redis instead of the embedded one"},
			&ucli.StringFlag{Name: "database-url", Usage: "use this database instead of a temporary SQLite file"},
			&ucli.DurationFlag{Name: "interval", Value: 10 * time.Second, Usage: "pause between demo rounds"},
			&ucli.IntFlag{Name: "rounds", Usage: "stop after this many demo rounds (0: until Ctrl-C)"},
			&ucli.StringFlag{Name: "log-level", Value: "warn", Usage: "worker log level: debug, info, warn or error"},
			&ucli.StringFlag{Name: "http-addr", Value: "127.0.0.1:9090", Usage: "loopback address for the asynqmon UI (/ui/), /metrics, /healthz and /readyz (their URLs are printed); empty disables"},
		},
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				return usagef("unexpected argument %q", c.Args().First())
			}
			if c.Duration("interval") <= 0 {
				return usagef("--interval must be positive, e.g. 10s")
			}
			if c.Int("rounds") < 0 {
				return usagef("--rounds must not be negative")
			}
			if a := c.String("http-addr"); a != "" && !devmode.IsLoopback(a) {
				return usagef("--http-addr %q must be a loopback address such as 127.0.0.1:9090: dev's UI has no login and can delete jobs", a)
			}
			logCfg := config.Default()
			logCfg.Log.Level = c.String("log-level")
			if err := logCfg.Validate(); err != nil {
				return err
			}
			redisURL, dbURL := c.String("redis-url"), c.String("database-url")
			if c.String("config") != "" {
				cfg, err := config.Load(c.String("config"), io.Env)
				if err != nil {
					return err
				}
				redisURL, dbURL = cmp.Or(redisURL, cfg.Redis.URL), cmp.Or(dbURL, cfg.Database.URL)
			}
			return devmode.Run(c.Context, devmode.Options{
				RedisURL:    redisURL,
				DatabaseURL: dbURL,
				Out:         io.Stdout,
				Logger:      newLogger(logCfg, io.Stderr),
				Interval:    c.Duration("interval"),
				Rounds:      c.Int("rounds"),
				HTTPAddr:    c.String("http-addr"),
				Version:     Version,
			})
		},
	}
}
