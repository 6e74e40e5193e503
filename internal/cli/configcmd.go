package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	ucli "github.com/urfave/cli/v2"
)

func configCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "config",
		Usage: "check or show the effective configuration",
		Subcommands: []*ucli.Command{
			{
				Name:  "check",
				Usage: "validate the configuration and ping Redis and the database (one line per check)",
				Flags: connFlags(),
				Action: func(c *ucli.Context) error {
					cfg, err := loadConfig(c, io)
					if err != nil {
						fmt.Fprintf(io.Stdout, "FAIL config: %s\n", oneLine(message(err)))
						return err
					}
					fmt.Fprintln(io.Stdout, "ok   config: valid")
					if err := checkChangeStream(cfg, io); err != nil {
						return err
					}
					return checkServices(c.Context, cfg, io)
				},
			},
			{
				Name:  "show",
				Usage: "print the effective configuration (file + environment + flags), secrets redacted",
				Flags: append([]ucli.Flag{outputFlag()}, connFlags()...),
				Action: func(c *ucli.Context) error {
					format, err := outputFormat(c)
					if err != nil {
						return err
					}
					cfg, err := loadConfig(c, io)
					if err != nil {
						return err
					}
					red := cfg.Redacted()
					if format == "json" {
						enc := json.NewEncoder(io.Stdout)
						enc.SetIndent("", "  ")
						return enc.Encode(red)
					}
					out, err := red.YAML()
					if err != nil {
						return err
					}
					_, err = io.Stdout.Write(out)
					return err
				},
			},
		},
	}
}

func checkServices(ctx context.Context, cfg config.Config, io IO) error {
	var failed error
	rdb, err := cfg.Redis.NewClient()
	if err == nil {
		err = pingRedis(ctx, rdb, cfg)
		_ = rdb.Close()
	}
	if err != nil {
		fmt.Fprintf(io.Stdout, "FAIL redis %s: %s\n", config.RedactURL(cfg.Redis.URL), oneLine(err.Error()))
		failed = err
	} else {
		fmt.Fprintf(io.Stdout, "ok   redis %s: answers\n", config.RedactURL(cfg.Redis.URL))
	}
	db, err := sqldb.Open(cfg.Database)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = sqldb.Ping(pctx, db)
		cancel()
		_ = db.Close()
	}
	if err != nil {
		fmt.Fprintf(io.Stdout, "FAIL database %s: %s\n", config.RedactURL(cfg.Database.URL), oneLine(err.Error()))
		if failed == nil {
			failed = err
		}
	} else {
		fmt.Fprintf(io.Stdout, "ok   database %s: answers\n", config.RedactURL(cfg.Database.URL))
	}
	if failed != nil {
		return fmt.Errorf("config check failed: %w", failed)
	}
	return nil
}
