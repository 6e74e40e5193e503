package config

import "flag"

// Flags are the settings the CLI takes on the command line of every command
// that talks to Redis or the database. An application embedding the worker
// registers them on its own flag set and calls Load, so it reads the same
// file, environment and flags as `cachekeeper worker`.
type Flags struct {
	// File is --config: the YAML file ("" reads DefaultFile if it exists).
	File string
	// RedisURL is --redis-url (overrides redis.url and CACHEKEEPER_REDIS_URL).
	RedisURL string
	// DatabaseURL is --database-url (overrides database.url and its driver).
	DatabaseURL string
	// LogLevel is --log-level.
	LogLevel string
	// RedisTLS are --redis-tls-ca-file, --redis-tls-cert-file,
	// --redis-tls-key-file and --redis-tls-server-name (override redis.tls).
	RedisTLS RedisTLSConfig
}

// Register defines -config (and -c), -redis-url, -database-url and
// -log-level on fs, with the CLI's names.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.File, "config", "", "YAML config file (default ./"+DefaultFile+" if it exists)")
	fs.StringVar(&f.File, "c", "", "shorthand for -config")
	fs.StringVar(&f.RedisURL, "redis-url", "", "Redis URL: redis://[user:pass@]host:6379/0, rediss://... (TLS), unix:///path.sock (env "+EnvRedisURL+")")
	fs.StringVar(&f.DatabaseURL, "database-url", "", "database URL: postgres://..., mysql://user:pass@host:3306/db, sqlite://file.db (env "+EnvDatabaseURL+")")
	fs.StringVar(&f.LogLevel, "log-level", "", "debug, info, warn or error (env "+EnvLogLevel+")")
	for _, tf := range TLSFlags(&f.RedisTLS) {
		fs.StringVar(tf.Dst, tf.Name, "", tf.Usage)
	}
}

// TLSFlag is one of the redis.tls flags, with the field it sets.
type TLSFlag struct {
	Name, Usage string
	Dst         *string
}

// TLSFlags are the flags of the redis.tls fields, setting t's.
func TLSFlags(t *RedisTLSConfig) []TLSFlag {
	return []TLSFlag{
		{"redis-tls-ca-file", "PEM file of the CA that signed Redis' certificate (redis.tls.ca_file, env " + EnvRedisTLSCAFile + ")", &t.CAFile},
		{"redis-tls-cert-file", "client certificate (PEM) for Redis with tls-auth-clients (redis.tls.cert_file, env " + EnvRedisTLSCertFile + ")", &t.CertFile},
		{"redis-tls-key-file", "the client certificate's key (PEM) (redis.tls.key_file, env " + EnvRedisTLSKeyFile + ")", &t.KeyFile},
		{"redis-tls-server-name", "name Redis' certificate must carry (redis.tls.server_name, env " + EnvRedisTLSServerName + ")", &t.ServerName},
	}
}

// Apply sets on cfg what the flags name; empty flags change nothing.
func (f Flags) Apply(cfg *Config) {
	if f.RedisURL != "" {
		cfg.Redis.URL = f.RedisURL
	}
	if f.DatabaseURL != "" {
		cfg.Database.URL = f.DatabaseURL
		cfg.Database.Driver = ""
	}
	if f.LogLevel != "" {
		cfg.Log.Level = f.LogLevel
	}
	for _, set := range []struct{ src, dst *string }{
		{&f.RedisTLS.CAFile, &cfg.Redis.TLS.CAFile}, {&f.RedisTLS.CertFile, &cfg.Redis.TLS.CertFile},
		{&f.RedisTLS.KeyFile, &cfg.Redis.TLS.KeyFile}, {&f.RedisTLS.ServerName, &cfg.Redis.TLS.ServerName},
	} {
		if *set.src != "" {
			*set.dst = *set.src
		}
	}
}

// Load is the loader the CLI uses: defaults, then the file (f.File, or
// DefaultFile when it exists), then environment variables read through env
// (os.Getenv; nil reads none), then the flags, then overrides, and finally
// Validate. Errors wrap ErrInvalid and say in one line what to fix.
func (f Flags) Load(env func(string) string, overrides ...func(*Config)) (Config, error) {
	return Load(f.File, env, append([]func(*Config){f.Apply}, overrides...)...)
}
