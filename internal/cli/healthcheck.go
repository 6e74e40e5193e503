package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cachekeeper/cachekeeper/config"

	ucli "github.com/urfave/cli/v2"
)

// healthcheckCommand GETs one of the process's own HTTP endpoints, for
// container healthchecks on an image with no shell or curl (distroless).
func healthcheckCommand(env IO) *ucli.Command {
	return &ucli.Command{
		Name:  "healthcheck",
		Usage: "GET a worker's or scheduler's /readyz (or --url) and exit 0 if it answers 200, 1 otherwise (for container healthchecks)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Usage: "endpoint to check (default: /readyz on loopback at the port of worker.metrics_addr from --config and the environment, :9090 by default)"},
			&ucli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "give up after this long"},
			&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file whose worker.metrics_addr is probed when --url is not given (default ./" + config.DefaultFile + " if it exists)"},
		},
		Action: func(c *ucli.Context) error {
			raw := c.String("url")
			if raw == "" {
				var err error
				if raw, err = readyzURL(c.String("config"), env.Env); err != nil {
					return err
				}
			}
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--url %q must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090/readyz", raw)
			}
			if c.Duration("timeout") <= 0 {
				return usagef("--timeout must be positive, e.g. 3s")
			}
			hc := &http.Client{Timeout: c.Duration("timeout")}
			req, err := http.NewRequestWithContext(c.Context, http.MethodGet, u.String(), nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", u.Redacted(), err)
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck %s: %s", u.Redacted(), resp.Status)
			}
			return nil
		},
	}
}

// readyzURL is the /readyz of the worker the configuration describes: the
// port of worker.metrics_addr, on loopback when it listens on every address.
func readyzURL(file string, env func(string) string) (string, error) {
	cfg, err := config.Flags{File: file}.Load(env)
	if err != nil {
		return "", err
	}
	addr := cfg.Worker.MetricsAddr
	if addr == "" {
		return "", usagef("worker.metrics_addr is empty, so no worker serves /readyz: give --url (a scheduler's is its --metrics-addr)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("worker.metrics_addr %q is not host:port: give --url", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}
