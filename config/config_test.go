package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cachekeeper.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultIsValid(t *testing.T) {
	t.Parallel()
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Worker.Queues["critical"] != 6 || c.Worker.Queues["default"] != 3 || c.Worker.Queues["low"] != 1 {
		t.Fatalf("queues = %v", c.Worker.Queues)
	}
}

func TestLoadFileEnvAndOverrides(t *testing.T) {
	t.Parallel()
	p := write(t, `
redis:
  url: redis://file:6379/1
worker:
  concurrency: 7
  shutdown_timeout: 45s
log:
  level: debug
`)
	c, err := config.Load(p, env(map[string]string{config.EnvRedisURL: "redis://env:6379/2", config.EnvServers: "2"}),
		func(c *config.Config) { c.Worker.Concurrency = 9 })
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.URL != "redis://env:6379/2" {
		t.Errorf("env did not override the file: %s", c.Redis.URL)
	}
	if c.Worker.Concurrency != 9 || c.Worker.Servers != 2 || c.Worker.ShutdownTimeout != 45*time.Second || c.Log.Level != "debug" {
		t.Errorf("worker = %+v, log = %+v", c.Worker, c.Log)
	}
}

func TestUnknownFieldNamesFieldAndLine(t *testing.T) {
	t.Parallel()
	p := write(t, "redis:\n  url: redis://x:6379/0\nworker:\n  concurency: 3\n")
	_, err := config.Load(p, nil)
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, want := range []string{"worker.concurency (line 4) is not a setting; did you mean concurrency?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans several lines: %q", err)
	}
}

// Unknown settings are named by their YAML path, never a Go type, with the
// nearest setting; YAML that does not parse names the line to fix.
func TestConfigErrorsNameThePathAndTheLine(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl_jiter: 10%\n":        "caches.user.ttl_jiter (line 4) is not a setting; did you mean ttl_jitter?",
		"caches:\n  user:\n    changes: {table: t, idd: 1}\n":                   "caches.user.changes.idd (line 3) is not a setting; did you mean id?",
		"schedule:\n  - name: a\n    kind: x\n    schedul: y\n":                 "schedule[0].schedul (line 4) is not a setting; did you mean schedule?",
		"redis:\n  url: redis://x\n database:\n  url: y\n":                      "line 3: database: (not valid YAML",
		"caches:\n  user:\n    key: 'user:{id}'\n    ttl: [1h\n    by_ids: x\n": "line 4: ttl: [1h (not valid YAML",
		"worker:\n  queues: {critical: 6, default: 3\nlog:\n  level: info\n":    "line 2: queues: {critical: 6, default: 3 (not valid YAML",
		"redis:\n  url: redis://x\n\tdatabase: 1\n":                             "line 3: database: 1 (not valid YAML",
	}
	for body, want := range cases {
		_, err := config.Load(write(t, body), nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: err = %v, want ErrInvalid mentioning %q", body, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("config %q: %q names a Go type or spans lines", body, err)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"worker:\n  concurrency: 0\n":                                                                     "worker.concurrency",
		"worker:\n  servers: 50\n  concurrency: 10\n":                                                     "worker.servers",
		"worker:\n  queues: {critical: 0}\n":                                                              "weight",
		"worker:\n  shutdown_timeout: soon\n":                                                             "line 2",
		"redis:\n  url: http://x\n":                                                                       "redis.url",
		"database:\n  url: oracle://x\n":                                                                  "oracle",
		"log:\n  level: loud\n":                                                                           "log.level",
		"caches:\n  user:\n    key: user\n    ttl: 1h\n":                                                  "no placeholder",
		"caches:\n  user:\n    key: user:{id}\n    by_ids: SELECT 1 WHERE id IN (?)\n":                    "ttl",
		"caches:\n  user:\n    key: user:{id}\n    ttl: 1h\n    by_ids: SELECT 1\n":                       "bind parameter",
		"caches:\n  user:\n    key: user:{id}\n    ttl: 1h\n    ttl_jitter: 150%\n":                       "percentage",
		"rate_limits:\n  score_unit: us\n":                                                                "score_unit",
		"key_prefix: \"a{b\"\n":                                                                           "key_prefix",
		"caches:\n  \"us{er}\":\n    key: user:{id}\n    ttl: 1h\n    by_ids: SELECT 1 WHERE id IN (?)\n": "is not a cache name",
		"warm:\n  coalesce_interval: 1ms\n":                                                               "warm.coalesce_interval",
		"warm:\n  coalesce_max_size: 0\n":                                                                 "warm.coalesce_max_size",
		"warm:\n  coalesce_queue: \"\"\n":                                                                 "warm.coalesce_queue",
		"warm:\n  coalesce_grace_period: 1s\n":                                                            "warm.coalesce_grace_period (line 2) is not a setting; it was replaced by warm.coalesce_interval",
		"warm:\n  coalesce_queue: bulk\ncaches:\n  user:\n    key: user:{id}\n    ttl: 1h\n    by_ids: SELECT 1 WHERE id IN (?)\n": `warm.coalesce_queue "bulk" is not one of worker.queues (critical, default, low)`,
	}
	for body, want := range cases {
		_, err := config.Load(write(t, body), nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: err = %v, want ErrInvalid mentioning %q", body, err, want)
		}
	}
	if _, err := config.Load("", env(map[string]string{config.EnvConcurrency: "lots"})); err == nil || !strings.Contains(err.Error(), config.EnvConcurrency) {
		t.Errorf("bad env integer: %v", err)
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("an explicitly named missing file was accepted")
	}
}

func TestRedactionAndConnOpt(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Redis.URL = "rediss://app:s3cret@cache.internal:6380/3"
	c.Database.URL = "postgres://svc:pa55@db:5432/app"
	r := c.Redacted()
	out, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "pa55"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("redacted config contains %q:\n%s", secret, out)
		}
	}
	if got := config.RedactURL("user:pw@tcp(db:3306)/app"); strings.Contains(got, "pw@") {
		t.Errorf("mysql DSN not redacted: %s", got)
	}
	opt, err := c.Redis.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	ro := opt.(asynq.RedisClientOpt)
	if ro.Addr != "cache.internal:6380" || ro.Username != "app" || ro.Password != "s3cret" || ro.DB != 3 || ro.TLSConfig == nil {
		t.Errorf("conn opt = %+v", ro)
	}
	c.Redis.ClusterAddrs = []string{"n1:6379", "n2:6379"}
	opt, _ = c.Redis.ConnOpt()
	cc, ok := opt.MakeRedisClient().(*redis.ClusterClient)
	if !ok {
		t.Fatalf("cluster conn opt makes %T, want *redis.ClusterClient", opt.MakeRedisClient())
	}
	defer cc.Close()
	if o := cc.Options(); o.Password != "s3cret" || o.ClusterStateReloadInterval != config.ClusterStateReloadInterval {
		t.Errorf("cluster client options: password %q, reload interval %s", o.Password, o.ClusterStateReloadInterval)
	}
}

func TestDatabaseDriver(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{"postgres://x/y": "postgres", "postgresql://x": "postgres", "mysql://r@h/db": "mysql", "sqlite://a.db": "sqlite"} {
		d := config.DatabaseConfig{URL: url}
		if got, err := d.DriverName(); err != nil || got != want {
			t.Errorf("%s: %s %v", url, got, err)
		}
	}
}
