package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"gopkg.in/yaml.v3"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/redisacl"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/worker"
	ucli "github.com/urfave/cli/v2"
)

func configCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "config",
		Usage: "check or show the effective configuration",
		Subcommands: []*ucli.Command{
			{
				Name:  "check",
				Usage: "run the worker's start-up checks: configuration, web UI exposure, Redis, database, every cache query (one line per check; exit 2 for a configuration error, 1 for a service down)",
				Flags: connFlags(),
				Action: func(c *ucli.Context) error {
					cfg, err := loadConfig(c, io)
					if err != nil {
						fmt.Fprintf(io.Stdout, "FAIL config: %s\n", oneLine(message(err)))
						return checkFailed{err}
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

// checkServices runs what the worker checks at start-up, one line each: the
// web UI's exposure, Redis and the database answering, and every cache's
// queries probed as the worker probes them (worker.CheckCaches, the same
// code and message). A configuration error exits 2, an unreachable service
// 1.
func checkServices(ctx context.Context, cfg config.Config, io IO) error {
	var configErr, serviceErr error
	if _, err := uiCredentials(cfg, io.Env); err != nil {
		fmt.Fprintf(io.Stdout, "FAIL ui: %s\n", oneLine(message(err)))
		configErr = err
	} else if cfg.Worker.UI {
		fmt.Fprintf(io.Stdout, "ok   ui: %s\n", uiExposure(cfg))
	}
	rdb, err := cfg.Redis.NewClient()
	if err == nil {
		err = pingRedis(ctx, rdb, cfg)
		defer rdb.Close()
	}
	if err != nil {
		fmt.Fprintf(io.Stdout, "FAIL redis %s: %s\n", config.RedactURL(cfg.Redis.URL), oneLine(err.Error()))
		serviceErr = err
	} else {
		fmt.Fprintf(io.Stdout, "ok   redis %s: answers\n", config.RedactURL(cfg.Redis.URL))
		rep, err := checkRedisPermissions(ctx, rdb, cfg)
		switch {
		case errors.Is(err, redisacl.ErrUnchecked):
			fmt.Fprintf(io.Stdout, "skip redis permissions: %s\n", oneLine(err.Error()))
		case err != nil:
			fmt.Fprintf(io.Stdout, "FAIL redis permissions: %s\n", oneLine(message(err)))
			configErr = err
		default:
			fmt.Fprintf(io.Stdout, "ok   redis permissions: %d checked (%s as user %q)\n", rep.Checked, rep.Method, rep.User)
		}
	}
	db, err := sqldb.Open(cfg.Database)
	if err == nil {
		defer db.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = sqldb.Ping(pctx, db)
		cancel()
	}
	if err != nil {
		fmt.Fprintf(io.Stdout, "FAIL database %s: %s\n", config.RedactURL(cfg.Database.URL), oneLine(err.Error()))
		switch {
		case sqldb.IsRefused(err):
			if configErr == nil {
				configErr = fmt.Errorf("%w: %v", config.ErrInvalid, err)
			}
		case serviceErr == nil:
			serviceErr = err
		}
		if len(cfg.Caches) > 0 {
			fmt.Fprintln(io.Stdout, "skip caches: the database does not answer")
		}
	} else {
		fmt.Fprintf(io.Stdout, "ok   database %s: answers\n", config.RedactURL(cfg.Database.URL))
		if len(cfg.Caches) > 0 {
			if err := worker.CheckCaches(ctx, cfg, db); err != nil {
				fmt.Fprintf(io.Stdout, "FAIL caches: %s\n", oneLine(err.Error()))
				if configErr == nil {
					configErr = err
				}
			} else {
				fmt.Fprintf(io.Stdout, "ok   caches: %d probed (queries run, key and tag columns returned)\n", len(cfg.Caches))
			}
		}
	}
	switch {
	case configErr != nil:
		return checkFailed{configErr}
	case serviceErr != nil:
		return checkFailed{serviceErr}
	}
	return nil
}

// checkFailed is config check's failure: each FAIL line is on stdout
// already, so stderr says only that the check failed, and the exit code
// still tells a configuration error (2) from a service down (1).
type checkFailed struct{ err error }

func (e checkFailed) Error() string {
	if exitCode(e.err) == ExitUsage {
		return "config check failed: fix the configuration (FAIL lines above)"
	}
	return "config check failed: a service does not answer (FAIL lines above)"
}
func (e checkFailed) Unwrap() error { return e.err }

func uiExposure(cfg config.Config) string {
	switch {
	case cfg.Worker.UIReadOnly:
		return "read-only"
	case httpapi.Loopback(cfg.Worker.MetricsAddr):
		return "loopback only"
	}
	return "login required"
}
