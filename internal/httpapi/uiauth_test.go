package httpapi_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/httpapi"
)

func TestLoopbackAndExposure(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "localhost:9090": true, "[::1]:9090": true, "127.1.2.3:1": true,
		":9090": false, "0.0.0.0:9090": false, "[::]:9090": false, "10.0.0.1:9090": false, "example.com:80": false, "nonsense": false} {
		if got := httpapi.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v", addr, got)
		}
	}
	if err := httpapi.CheckUIExposure(":9090", false, nil); !errors.Is(err, httpapi.ErrUIExposed) {
		t.Errorf("exposed UI accepted: %v", err)
	}
	if httpapi.CheckUIExposure(":9090", true, nil) != nil || httpapi.CheckUIExposure("127.0.0.1:9090", false, nil) != nil {
		t.Error("read-only or loopback UI refused")
	}
}

func TestLoadCredentials(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if c, err := httpapi.LoadCredentials(env(nil), ""); c != nil || err != nil {
		t.Fatalf("nothing set: %v %v", c, err)
	}
	if _, err := httpapi.LoadCredentials(env(map[string]string{httpapi.EnvUIUser: "ops"}), ""); err == nil {
		t.Error("a user without a password was accepted")
	}
	file := filepath.Join(t.TempDir(), "ui")
	if err := os.WriteFile(file, []byte("ops:a-long-enough-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := httpapi.LoadCredentials(env(nil), file); c == nil || err != nil {
		t.Fatalf("file: %v %v", c, err)
	}
	if err := os.WriteFile(file, []byte("no colon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := httpapi.LoadCredentials(env(nil), file); err == nil {
		t.Error("a file without user:password was accepted")
	}
}
