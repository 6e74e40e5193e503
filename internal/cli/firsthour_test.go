package cli_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// configFile writes body as a config file and returns its path.
func configFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cachekeeper.yaml")
	writeConfig(t, p, body)
	return p
}

func TestVersionJSON(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "version", "-o", "json")
	if res.code != 0 {
		t.Fatalf("version -o json: exit %d, stderr %q", res.code, res.stderr)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("version -o json printed %q: %v", res.stdout, err)
	}
	for _, k := range []string{"cachekeeper", "go", "asynq"} {
		if v[k] == "" {
			t.Errorf("version -o json lacks %q: %s", k, res.stdout)
		}
	}
}

// Without --url, healthcheck probes the port of the configuration's
// worker.metrics_addr.
func TestHealthcheckReadsMetricsAddrFromTheConfig(t *testing.T) {
	t.Parallel()
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			hits++
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port} {
		cfg := configFile(t, "worker:\n  metrics_addr: \""+addr+"\"\n")
		res := run(t, context.Background(), nil, "healthcheck", "--config", cfg)
		if res.code != 0 {
			t.Errorf("healthcheck with metrics_addr %s: exit %d, stderr %q", addr, res.code, res.stderr)
		}
	}
	if hits != 2 {
		t.Errorf("the worker's /readyz was asked %d times, want 2", hits)
	}
	env := map[string]string{"CACHEKEEPER_METRICS_ADDR": "127.0.0.1:" + port}
	if res := run(t, context.Background(), env, "healthcheck", "--config", configFile(t, "log: {level: info}\n")); res.code != 0 {
		t.Errorf("healthcheck with CACHEKEEPER_METRICS_ADDR: exit %d, stderr %q", res.code, res.stderr)
	}
	res := run(t, context.Background(), nil, "healthcheck", "--config", configFile(t, "worker:\n  metrics_addr: \"\"\n"))
	if res.code != 2 || !strings.Contains(res.stderr, "--url") {
		t.Errorf("healthcheck with no metrics_addr: exit %d, stderr %q; want 2 and a hint to give --url", res.code, res.stderr)
	}
}
