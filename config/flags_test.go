package config_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
)

// An embedder's flags, environment and file are read as the CLI reads them:
// flags over environment over file.
func TestFlagsLoadLikeTheCLI(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "app.yaml")
	yaml := "redis:\n  url: redis://file:6379/0\nlog:\n  level: warn\nsessions:\n  key: \"sess:{token}\"\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var f config.Flags
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"-config", file, "-redis-url", "redis://flag:6379/0"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{config.EnvRedisURL: "redis://env:6379/0", config.EnvLogLevel: "debug"}
	cfg, err := f.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.URL != "redis://flag:6379/0" || cfg.Log.Level != "debug" || cfg.Sessions.Key != "sess:{token}" {
		t.Fatalf("redis %q, log level %q, sessions.key %q", cfg.Redis.URL, cfg.Log.Level, cfg.Sessions.Key)
	}
	// A file named by the flag that does not exist is an error, as in the CLI.
	if _, err := (config.Flags{File: filepath.Join(t.TempDir(), "missing.yaml")}).Load(nil); err == nil {
		t.Fatal("a missing -config file must be an error")
	}
}
