package config_test

import (
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/scheduler"
)

// The config file's schedule section is checked against the rest of the
// configuration: caches exist and have an "all" query, queues are served.
func TestConfigScheduleSection(t *testing.T) {
	t.Parallel()
	const head = `
caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email FROM users WHERE id IN (?)"
    all: "SELECT id, email FROM users WHERE id > ? ORDER BY id LIMIT ?"
  org:
    key: "org:{id}"
    ttl: 1h
    by_ids: "SELECT id FROM orgs WHERE id IN (?)"
schedule:
`
	cases := []struct{ name, yaml, want string }{
		{"defaults", `
  - name: session-cleanup
    schedule: "@every 5m"
    kind: session:cleanup
  - name: rate-limit-prune
    schedule: "@every 1m"
    kind: ratelimit:prune
  - name: warm-users-nightly
    schedule: "0 3 * * *"
    time_zone: UTC
    kind: cache:warm_all
    args: {cache: user}
    timeout: 2h
    catch_up: one
`, ""},
		{"nested yaml args", `
  - name: cleanup
    schedule: "*/10 * * * *"
    kind: session:cleanup
    args:
      max_age: 48h
      idle_timeout: 2h
      dry_run: true
`, ""},
		{"unknown cache", `
  - name: warm
    schedule: "@daily"
    kind: cache:warm_all
    args: {cache: users}
`, `schedule.warm.args.cache "users" is not a cache declared under caches (org, user)`},
		{"cache without all", `
  - name: warm
    schedule: "@daily"
    kind: cache:warm_all
    args: {cache: org}
`, "needs caches.org.all"},
		{"queue not served", `
  - name: cleanup
    schedule: "@hourly"
    kind: session:cleanup
    queue: slow
`, `schedule.cleanup.queue "slow" is not one of worker.queues (critical, default, low)`},
		{"misspelt field", `
  - name: cleanup
    schedule: "@hourly"
    kind: session:cleanup
    catchup: one
`, "catchup (line 16) is not a setting; did you mean catch_up?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Default()
			err := config.Parse([]byte(head+strings.TrimPrefix(c.yaml, "\n")), &cfg)
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
			if c.want == "" {
				if _, err := scheduler.ParseEntries(cfg.Schedule); err != nil {
					t.Fatalf("ParseEntries: %v", err)
				}
			}
		})
	}
}
