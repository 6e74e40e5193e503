// Package config loads cachekeeper's configuration: one YAML file, strictly
// parsed, then environment variables, then command-line flags (applied by the
// CLI). Validate reports the first problem in one line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/scheduler"
	"gopkg.in/yaml.v3"
)

// DefaultFile is read when --config is not given and the file exists.
const DefaultFile = "cachekeeper.yaml"

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole configuration. The zero value is not valid: use
// Default() or Load().
type Config struct {
	Redis    RedisConfig    `yaml:"redis"`
	Database DatabaseConfig `yaml:"database"`
	Worker   WorkerConfig   `yaml:"worker"`
	Log      LogConfig      `yaml:"log"`
	// KeyPrefix starts every key cachekeeper owns (fences, tags, inbox...).
	KeyPrefix string `yaml:"key_prefix"`
	// Caches maps a cache name ("user") to its spec.
	Caches     map[string]CacheSpec    `yaml:"caches"`
	Warm       WarmConfig              `yaml:"warm"`
	Invalidate InvalidateConfig        `yaml:"invalidate"`
	Fence      FenceConfig             `yaml:"fence"`
	Events     EventsConfig            `yaml:"events"`
	Inbox      InboxConfig             `yaml:"inbox"`
	Sessions   SessionsConfig          `yaml:"sessions"`
	RateLimits RateLimitsConfig        `yaml:"rate_limits"`
	Schedule   []scheduler.EntryConfig `yaml:"schedule"`

	// Pace sets how maintenance paces itself by Redis's latency.
	Pace PaceConfig `yaml:"pace"`
}

// LogConfig sets the logger.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Default returns the configuration used when nothing is set: local Redis,
// the embedded SQLite database file, and the FastAPI guide's key layout.
func Default() Config {
	c := Config{
		Redis:     RedisConfig{URL: "redis://127.0.0.1:6379/0"},
		Database:  DatabaseConfig{URL: "sqlite://cachekeeper.db"},
		Log:       LogConfig{Level: "info", Format: "text"},
		KeyPrefix: "cachekeeper:",
	}
	c.Worker.setDefaults()
	c.Warm.setDefaults()
	c.Invalidate.setDefaults()
	c.Fence.setDefaults()
	c.Events.setDefaults(c.KeyPrefix)
	c.Inbox.setDefaults(c.KeyPrefix)
	c.Sessions.setDefaults()
	c.RateLimits.setDefaults()
	c.Pace.setDefaults()
	return c
}

// Load reads path (or DefaultFile when path is "" and the file exists), then
// applies environment overrides, then overrides (command-line flags), and
// validates the result.
func Load(path string, env func(string) string, overrides ...func(*Config)) (Config, error) {
	cfg := Default()
	explicit := path != ""
	if !explicit {
		path = DefaultFile
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := Parse(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// No file: defaults and environment only.
	default:
		return Config{}, fmt.Errorf("%w: cannot read config file: %v", ErrInvalid, err)
	}
	if err := cfg.ApplyEnv(env); err != nil {
		return Config{}, err
	}
	for _, o := range overrides {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse decodes YAML over cfg (which holds the defaults). An unknown field is
// an error naming the field and its line.
func Parse(data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, syntaxError(data, err))
	}
	if msg := unknownField(&doc); msg != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		return fmt.Errorf("%w: %s%s", ErrInvalid, oneLine(err), renamedHint(err))
	}
	return nil
}

// renamed maps settings that were replaced to what replaced them, so that an
// old configuration fails with the way forward.
var renamed = map[string]string{
	"coalesce_grace_period": "warm.coalesce_interval (how often the worker takes the ids WarmCache left pending)",
	"coalesce_max_delay":    "warm.coalesce_interval (a warm now waits one interval for company, then for its job to be picked up)",
}

func renamedHint(err error) string {
	for old, now := range renamed {
		if strings.Contains(err.Error(), "field "+old+" not found") {
			return "; it was replaced by " + now
		}
	}
	return ""
}

// oneLine turns yaml.v3's multi-line error into one line such as
// `line 3: field redsi not found in type config.Config`.
func oneLine(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// Env names.
const (
	EnvRedisURL      = "CACHEKEEPER_REDIS_URL"
	EnvDatabaseURL   = "CACHEKEEPER_DATABASE_URL"
	EnvLogLevel      = "CACHEKEEPER_LOG_LEVEL"
	EnvLogFormat     = "CACHEKEEPER_LOG_FORMAT"
	EnvConcurrency   = "CACHEKEEPER_WORKER_CONCURRENCY"
	EnvServers       = "CACHEKEEPER_WORKER_SERVERS"
	EnvMetricsAddr   = "CACHEKEEPER_METRICS_ADDR"
	EnvEventsChannel = "CACHEKEEPER_EVENTS_CHANNEL"
	// The redis.tls fields.
	EnvRedisTLSCAFile     = "CACHEKEEPER_REDIS_TLS_CA_FILE"
	EnvRedisTLSCertFile   = "CACHEKEEPER_REDIS_TLS_CERT_FILE"
	EnvRedisTLSKeyFile    = "CACHEKEEPER_REDIS_TLS_KEY_FILE"
	EnvRedisTLSServerName = "CACHEKEEPER_REDIS_TLS_SERVER_NAME"
)

// EnvVars lists every environment variable Load reads, for --help.
var EnvVars = []string{EnvRedisURL, EnvDatabaseURL, EnvLogLevel, EnvLogFormat, EnvConcurrency, EnvServers, EnvMetricsAddr, EnvEventsChannel,
	EnvRedisTLSCAFile, EnvRedisTLSCertFile, EnvRedisTLSKeyFile, EnvRedisTLSServerName}

// ApplyEnv overrides fields from environment variables (env is os.Getenv in
// production, a map lookup in tests).
func (c *Config) ApplyEnv(env func(string) string) error {
	if env == nil {
		return nil
	}
	set := func(name string, dst *string) {
		if v := env(name); v != "" {
			*dst = v
		}
	}
	set(EnvRedisURL, &c.Redis.URL)
	set(EnvDatabaseURL, &c.Database.URL)
	set(EnvLogLevel, &c.Log.Level)
	set(EnvLogFormat, &c.Log.Format)
	set(EnvMetricsAddr, &c.Worker.MetricsAddr)
	set(EnvEventsChannel, &c.Events.Channel)
	set(EnvRedisTLSCAFile, &c.Redis.TLS.CAFile)
	set(EnvRedisTLSCertFile, &c.Redis.TLS.CertFile)
	set(EnvRedisTLSKeyFile, &c.Redis.TLS.KeyFile)
	set(EnvRedisTLSServerName, &c.Redis.TLS.ServerName)
	for _, iv := range []struct {
		name string
		dst  *int
	}{{EnvConcurrency, &c.Worker.Concurrency}, {EnvServers, &c.Worker.Servers}} {
		if v := env(iv.name); v != "" {
			var n int
			if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(v) {
				return fmt.Errorf("%w: %s=%q is not an integer", ErrInvalid, iv.name, v)
			}
			*iv.dst = n
		}
	}
	return nil
}

// Validate checks every section and returns the first problem.
func (c *Config) Validate() error {
	checks := []func() error{
		c.Redis.validate,
		c.Database.validate,
		c.Worker.validate,
		c.Log.validate,
		c.validateKeyPrefix,
		c.Warm.validate,
		c.Invalidate.validate,
		c.Fence.validate,
		c.validateCaches,
		c.validateCoalesceQueue,
		c.Events.validate,
		c.Inbox.validate,
		c.Sessions.validate,
		c.RateLimits.validate,
		c.Pace.validate,
		c.validateSchedule,
		c.validateKeyTemplates,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			if errors.Is(err, ErrInvalid) {
				return err
			}
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return nil
}

func (c *Config) validateKeyPrefix() error {
	if c.KeyPrefix == "" {
		return errors.New("key_prefix must not be empty (default \"cachekeeper:\")")
	}
	if strings.ContainsAny(c.KeyPrefix, "{}*?[] ") {
		return fmt.Errorf("key_prefix %q must not contain braces, glob characters or spaces", c.KeyPrefix)
	}
	return nil
}

func (l *LogConfig) validate() error {
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q must be debug, info, warn or error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q must be text or json", l.Format)
	}
	return nil
}

func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be a positive duration such as 30s, got %s", name, d)
	}
	return nil
}

// Redacted returns a copy safe to print or log: passwords in URLs and DSNs
// are replaced.
func (c Config) Redacted() Config {
	out := c
	out.Redis.URL = RedactURL(c.Redis.URL)
	out.Redis.Password = redactString(c.Redis.Password)
	out.Database.URL = RedactURL(c.Database.URL)
	if c.Redis.Sentinel != nil {
		s := *c.Redis.Sentinel
		s.Password = redactString(s.Password)
		out.Redis.Sentinel = &s
	}
	return out
}

// YAML renders the configuration as YAML.
func (c Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

func redactString(s string) string {
	if s == "" {
		return ""
	}
	return Redaction
}
