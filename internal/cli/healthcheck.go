package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	ucli "github.com/urfave/cli/v2"
)

// healthcheckCommand GETs one of the process's own HTTP endpoints, for
// container healthchecks on an image with no shell or curl (distroless).
func healthcheckCommand(_ IO) *ucli.Command {
	return &ucli.Command{
		Name:  "healthcheck",
		Usage: "GET a worker's or scheduler's /readyz (or --url) and exit 0 if it answers 200, 1 otherwise (for container healthchecks)",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Value: "http://127.0.0.1:9090/readyz", Usage: "endpoint to check"},
			&ucli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "give up after this long"},
		},
		Action: func(c *ucli.Context) error {
			u, err := url.Parse(c.String("url"))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--url %q must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090/readyz", c.String("url"))
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
