package config_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// A redis-server with TLS and tls-auth-clients yes (its default), and a CA
// and certificates made by the test: redis.tls reaches it with the CA and
// the client certificate (from the file, the environment or the flags), for
// cachekeeper's client and asynq's alike, and fails without either.
func TestRedisTLSWithACAAndAClientCertificate(t *testing.T) {
	t.Parallel()
	_, f, addr := testenv.NewTLSServer(t)
	ctx := context.Background()
	ping := func(rc config.RedisConfig) error {
		t.Helper()
		c, err := rc.NewClient()
		if err != nil {
			return err
		}
		defer c.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return c.Ping(pctx).Err()
	}
	full := config.RedisTLSConfig{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}
	for _, tc := range []struct {
		name string
		rc   config.RedisConfig
		want string // "" : answers
	}{
		{"rediss URL", config.RedisConfig{URL: "rediss://" + addr + "/0", TLS: full}, ""},
		{"redis URL: the tls section turns TLS on", config.RedisConfig{URL: "redis://" + addr + "/0", TLS: full}, ""},
		{"server name", config.RedisConfig{URL: "rediss://" + addr + "/0", TLS: config.RedisTLSConfig{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: f.ServerName}}, ""},
		{"wrong server name", config.RedisConfig{URL: "rediss://" + addr + "/0", TLS: config.RedisTLSConfig{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "other.test"}}, "certificate"},
		{"no client certificate", config.RedisConfig{URL: "rediss://" + addr + "/0", TLS: config.RedisTLSConfig{CAFile: f.CA}}, ""},
		{"no CA", config.RedisConfig{URL: "rediss://" + addr + "/0", TLS: config.RedisTLSConfig{CertFile: f.ClientCert, KeyFile: f.ClientKey}}, "certificate"},
	} {
		err := ping(tc.rc)
		if tc.name == "no client certificate" {
			// Redis ends the handshake after it: the error shows on the
			// first read (certificate required, or a reset / EOF).
			if err == nil {
				t.Errorf("%s: Redis with tls-auth-clients answered a client without a certificate", tc.name)
			}
			t.Logf("%s: %v", tc.name, err)
			continue
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error about the %s", tc.name, err, tc.want)
		}
	}

	// asynq's connection (the worker's servers) uses the same settings.
	rc := config.RedisConfig{URL: "redis://" + addr + "/0", TLS: full}
	opt, err := rc.ConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("tls:probe", nil)); err != nil {
		t.Fatalf("asynq over TLS: %v", err)
	}

	// The same from the environment and from the flags.
	env := map[string]string{
		config.EnvRedisURL: "redis://" + addr + "/0", config.EnvRedisTLSCAFile: f.CA,
		config.EnvRedisTLSCertFile: f.ClientCert, config.EnvRedisTLSKeyFile: f.ClientKey,
	}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(cfg.Redis); err != nil {
		t.Errorf("from the environment: %v", err)
	}
	flags := config.Flags{RedisURL: "redis://" + addr + "/0", RedisTLS: full}
	if cfg, err = flags.Load(nil); err != nil {
		t.Fatal(err)
	}
	if err := ping(cfg.Redis); err != nil {
		t.Errorf("from the flags: %v", err)
	}

	// Bad settings are refused in one line when the configuration loads.
	for _, tc := range []struct {
		tls  config.RedisTLSConfig
		want string
	}{
		{config.RedisTLSConfig{CAFile: "/nonexistent/ca.pem"}, "redis.tls.ca_file"},
		{config.RedisTLSConfig{CertFile: f.ClientCert}, "go together"},
		{config.RedisTLSConfig{CAFile: f.ClientKey}, "no PEM certificate"},
	} {
		flags := config.Flags{RedisURL: "redis://" + addr + "/0", RedisTLS: tc.tls}
		if _, err := flags.Load(nil); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line about %s", tc.tls, err, tc.want)
		}
	}
}
