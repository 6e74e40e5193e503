package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
)

// FuzzParseYAML: no configuration file panics the parser or Validate;
// every rejection wraps ErrInvalid and is one line.
func FuzzParseYAML(f *testing.F) {
	for _, s := range []string{
		"redis:\n  url: redis://a:b@h:1/0\n",
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id FROM u WHERE id IN (?)\n",
		"worker:\n  queues: {critical: 6}\n  fast_lane: {queue: x}\n",
		"schedule:\n  - name: a\n    schedule: \"@every 1m\"\n    kind: ratelimit:prune\n    args: {pattern: \"asynq:*\"}\n",
		"key_prefix: \"{\"\n", "\t", "a: [", "fence: {ttl: forever}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := config.Default()
		err := config.Parse(data, &c)
		if err == nil {
			err = c.Validate()
			if err == nil {
				_ = c.Redacted()
				return
			}
		}
		if err.Error() == "" {
			t.Fatal("empty error")
		}
		if !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("error %q does not wrap ErrInvalid", err)
		}
	})
}

// FuzzApplyEnv: environment values never panic; rejections name the variable.
func FuzzApplyEnv(f *testing.F) {
	f.Add("lots", "redis://u:p@h:x/0", ":9090")
	f.Add("-1", "", "")
	f.Fuzz(func(t *testing.T, concurrency, redisURL, metrics string) {
		c := config.Default()
		env := map[string]string{config.EnvConcurrency: concurrency, config.EnvRedisURL: redisURL, config.EnvMetricsAddr: metrics}
		if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil && !strings.Contains(err.Error(), "CACHEKEEPER_") {
			t.Fatalf("error %q names no variable", err)
		}
	})
}

// FuzzRedact: redaction never panics, and a password placed in a URL, DSN
// or password= never survives it, whatever surrounds it.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"redis://ck:%s@h:notaport/0", "redis://ck:%s%%zz@h/0", "%s", "mysql://u:%s@tcp(h)/d", "u:%s@tcp(h:1)/d", "host=h password=%s", "postgres://h/d?password=%s", "unix://u:%s@/x.sock"} {
		f.Add(s, "s3cretPW")
	}
	f.Fuzz(func(t *testing.T, format, secret string) {
		if strings.Count(format, "%s") != 1 || len(secret) < 3 || strings.ContainsAny(secret, "@:/ \t\n\"'<>&;?=%()[]\\") {
			_ = config.Redact(format)
			return
		}
		s := strings.Replace(format, "%s", secret, 1)
		out := config.Redact(s)
		placed := strings.Contains(format, ":%s@") || strings.Contains(format, "password=%s")
		if placed && strings.Contains(out, secret) && !strings.Contains(strings.Replace(format, "%s", "", 1), secret) {
			t.Fatalf("Redact(%q) = %q keeps the secret", s, out)
		}
		if got := config.RedactText(s, secret); strings.Contains(got, secret) {
			t.Fatalf("RedactText(%q, secret) = %q keeps the secret", s, got)
		}
	})
}

// FuzzURLErrors: a Redis or database URL with a password, however broken,
// gives an error (or options) that never quotes the password.
func FuzzURLErrors(f *testing.F) {
	for _, s := range []string{"redis://ck:%s@h:notaport/0", "redis://ck:%s%%zz@h/0", "redis://ck:%s@/0", "rediss://:%s@[::1/0", "mysql://ck:%s@h:x/db", "postgres://ck:%s@h:1/db%%", "ck:%s@tcp(h/db"} {
		f.Add(s, "s3cretPW")
	}
	f.Fuzz(func(t *testing.T, format, secret string) {
		if !strings.Contains(format, ":%s@") || strings.Count(format, "%s") != 1 || len(secret) < 3 || strings.ContainsAny(secret, "@:/ \t\n\"'<>&;?=%()[]\\#") {
			return
		}
		if strings.ContainsFunc(format, func(r rune) bool { return r < ' ' || r > '~' }) {
			return // %q would escape such bytes, and "\xbd0" reads as text containing "bd0"
		}
		if strings.Contains(config.Redaction, secret) {
			return // "xxx" is found in the redaction mark itself
		}
		if strings.Contains(strings.Replace(format, "%s", "", 1), secret) {
			return // the "secret" is also other text of the URL (a scheme, a host): not a leak to look for
		}
		u := strings.Replace(format, "%s", secret, 1)
		r := config.RedisConfig{URL: u}
		if _, err := r.Options(); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("redis.url %q: error %q quotes the password", u, err)
		}
		d := config.DatabaseConfig{URL: u}
		if _, err := d.DriverName(); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("database.url %q: error %q quotes the password", u, err)
		}
	})
}
