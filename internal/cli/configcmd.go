package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"gopkg.in/yaml.v3"
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
					out, err := cfg.Redacted().YAML()
					if err != nil {
						return err
					}
					if format == "json" {
						// The YAML's names and duration strings, as one JSON object.
						var m map[string]any
						if err := yaml.Unmarshal(out, &m); err != nil {
							return fmt.Errorf("config show: %w", err)
						}
						return json.NewEncoder(io.Stdout).Encode(m)
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
