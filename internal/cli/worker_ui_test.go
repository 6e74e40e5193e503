package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
)

// The worker serves asynqmon's web UI and its JSON API under /ui/ on its
// metrics address with --ui (or worker.ui), read-only with
// worker.ui_read_only, and nothing there without.
func TestWorkerUI(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}
	// A queue no worker serves, so the job stays pending for the UI to list.
	// The client shares r.Client, which testenv closes.
	client := asynq.NewClientFromRedisClient(r.Client)
	if _, err := client.Enqueue(asynq.NewTask("ui:probe", nil), asynq.Queue("ui-probe")); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	do := func(method, url string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	queueListed := func(base string) {
		t.Helper()
		code, _, body := do("GET", base+"/ui/api/queues")
		var got struct {
			Queues []struct {
				Queue string `json:"queue"`
				Size  int    `json:"size"`
			} `json:"queues"`
		}
		if code != http.StatusOK {
			t.Fatalf("GET /ui/api/queues = %d %q", code, body)
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("GET /ui/api/queues: %v in %q", err, body)
		}
		for _, q := range got.Queues {
			if q.Queue == "ui-probe" && q.Size == 1 {
				return
			}
		}
		t.Fatalf("GET /ui/api/queues lists %+v, want ui-probe with 1 job", got.Queues)
	}

	t.Run("on", func(t *testing.T) {
		base := startWorker(t, env, "--ui")
		code, ctype, body := do("GET", base+"/ui/")
		script := regexp.MustCompile(`<script src="(/ui/static/js/[^"]+)"`).FindStringSubmatch(body)
		if code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, "<title>Asynq - Monitoring</title>") || script == nil {
			t.Fatalf("GET /ui/ = %d %s %.200q, want asynqmon's page loading its scripts from /ui/static/", code, ctype, body)
		}
		if code, ctype, _ := do("GET", base+script[1]); code != http.StatusOK || !strings.HasPrefix(ctype, "application/javascript") {
			t.Errorf("GET %s = %d %s, want the script", script[1], code, ctype)
		}
		if code, _, _ := do("GET", base+"/ui"); code != http.StatusOK {
			t.Errorf("GET /ui = %d, want the page after a redirect", code)
		}
		queueListed(base)
		if code, _, _ := do("GET", base+"/healthz"); code != http.StatusOK {
			t.Errorf("GET /healthz = %d next to the UI", code)
		}
	})

	t.Run("read only", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "cachekeeper.yaml")
		if err := os.WriteFile(cfg, []byte("worker:\n  ui: true\n  ui_read_only: true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		base := startWorker(t, env, "--config", cfg)
		if code, _, body := do("GET", base+"/ui/"); code != http.StatusOK || !strings.Contains(body, `window.FLAG_READ_ONLY="true"`) {
			t.Fatalf("GET /ui/ = %d %.200q, want the read-only page", code, body)
		}
		if code, _, body := do("DELETE", base+"/ui/api/queues/ui-probe"); code != http.StatusMethodNotAllowed {
			t.Fatalf("DELETE /ui/api/queues/ui-probe = %d %q, want 405", code, body)
		}
		queueListed(base)
	})

	t.Run("off", func(t *testing.T) {
		base := startWorker(t, env)
		for _, path := range []string{"/ui/", "/ui/api/queues"} {
			if code, _, body := do("GET", base+path); code != http.StatusNotFound {
				t.Errorf("GET %s without --ui = %d %.200q, want 404", path, code, body)
			}
		}
	})

	t.Run("exposed without login refused", func(t *testing.T) {
		for _, addr := range []string{":9090", "0.0.0.0:9090", "[::]:9090", "192.0.2.1:9090", "example.com:9090"} {
			res := run(t, context.Background(), env, "worker", "--ui", "--metrics-addr", addr)
			if res.code != cli.ExitUsage || !strings.Contains(res.stderr, "without a login") || !strings.Contains(res.stderr, "CACHEKEEPER_UI_PASSWORD") ||
				!strings.Contains(res.stderr, "ui_read_only") || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
				t.Errorf("--ui on %s without a login: %+v, want exit 2 and one line saying how to fix it", addr, res)
			}
		}
		// A read-only UI may be exposed; the address is not bound here.
		short := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL, "CACHEKEEPER_UI_PASSWORD": "short"}
		if res := run(t, context.Background(), short, "worker", "--ui", "--metrics-addr", ":9090"); res.code != cli.ExitUsage || !strings.Contains(res.stderr, "at least 12") {
			t.Errorf("a short password: %+v", res)
		}
	})

	t.Run("login", func(t *testing.T) {
		authEnv := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL, "CACHEKEEPER_UI_USER": "ops", "CACHEKEEPER_UI_PASSWORD": "correct horse battery"}
		base := startWorker(t, authEnv, "--ui")
		if code, _, _ := do("GET", base+"/ui/api/queues"); code != http.StatusUnauthorized {
			t.Fatalf("GET /ui/api/queues without a login = %d, want 401", code)
		}
		for _, path := range []string{"/healthz", "/metrics"} {
			if code, _, _ := do("GET", base+path); code != http.StatusOK {
				t.Errorf("GET %s = %d: it must stay open for Prometheus and Kubernetes", path, code)
			}
		}
		for _, cred := range [][2]string{{"ops", "wrong"}, {"admin", "correct horse battery"}, {"ops", ""}} {
			req, _ := http.NewRequest("GET", base+"/ui/api/queues", nil)
			req.SetBasicAuth(cred[0], cred[1])
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("login %v = %d, want 401", cred, resp.StatusCode)
			}
		}
		req, _ := http.NewRequest("GET", base+"/ui/api/queues", nil)
		req.SetBasicAuth("ops", "correct horse battery")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /ui/api/queues with the login = %d", resp.StatusCode)
		}
	})

	t.Run("no metrics address", func(t *testing.T) {
		res := run(t, context.Background(), env, "worker", "--ui", "--metrics-addr", "")
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, "worker.ui needs worker.metrics_addr") || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Fatalf("--ui without a metrics address: %+v, want exit 2 and one line", res)
		}
	})
}

var metricsAddrLog = regexp.MustCompile(`msg="serving metrics and health" addr=(\S+)`)

// startWorker runs `cachekeeper worker` with its HTTP server on a free
// loopback port until the test ends, and returns the server's base URL.
func startWorker(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	args = append([]string{"worker", "--metrics-addr", "127.0.0.1:0", "--servers", "1", "--concurrency", "2", "--log-level", "info"}, args...)
	go func() {
		done <- cli.Run(ctx, args, cli.IO{Stdout: &out, Stderr: &errb, Env: func(k string) string { return env[k] }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("worker exit %d: %s", code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := metricsAddrLog.FindStringSubmatch(errb.String()); m != nil {
			return "http://" + m[1]
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("worker exit %d before serving: %s", code, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not log its metrics address within 10s: %s", errb.String())
		}
	}
}
