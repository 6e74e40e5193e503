package devmode_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/devmode"
)

// One demo round on the embedded services: every step reports success and
// everything stops cleanly.
func TestRunOneRoundEmbedded(t *testing.T) {
	t.Parallel()
	var out demoBuf
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := devmode.Run(ctx, devmode.Options{Out: &out, Rounds: 1, Interval: time.Second}); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"embedded Redis (miniredis) listening on 127.0.0.1:",
		"users table ready (50 rows)",
		"scheduler: session-cleanup",
		"[warm] cache:warm_all: 50 of 50 rows",
		"[invalidate] subscriber got: cache.invalidated",
		"[tag] subscriber got: cache.invalidated",
		"[schedule] tick ",
		"[fence] the warm's stale write was skipped (fenced)",
		"[sessions] session:cleanup",
		"[ratelimit] ratelimit:prune",
		"[notify] subscriber received",
		"stopped cleanly",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "failed:") {
		t.Errorf("a demo step failed:\n%s", got)
	}
}

// The dev run serves the UI and the worker's endpoints on loopback, prints
// their URLs, and refuses any other address.
func TestRunServesUIAndEndpointsOnLoopback(t *testing.T) {
	t.Parallel()
	var out demoBuf
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := map[string]int{}
	var addr, metrics string
	err := devmode.Run(ctx, devmode.Options{Out: &out, Rounds: 1, Interval: time.Millisecond, HTTPAddr: "127.0.0.1:0", Version: "v9.9.9-test",
		Ready: func(env devmode.Env) {
			addr = env.HTTPAddr
			hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			for _, p := range []string{"/healthz", "/readyz", "/metrics", "/ui/", "/caches", "/caches.json"} {
				resp, err := hc.Get("http://" + env.HTTPAddr + p)
				if err != nil {
					t.Errorf("GET %s: %v", p, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got[p] = resp.StatusCode
				if p == "/metrics" {
					metrics = string(body)
				}
			}
		}})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("served on %q, want 127.0.0.1", addr)
	}
	for p, code := range got {
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	if len(got) != 6 {
		t.Errorf("answers %v", got)
	}
	// The same gauges as a real worker's /metrics.
	for _, want := range []string{`cachekeeper_queue_size{queue="critical",state="pending"}`, `cachekeeper_queue_paused{queue="low"}`,
		`cachekeeper_coalesce_pending{cache="user"}`, "cachekeeper_inbox_dead_letters", `cachekeeper_build_info{asynq=`, `version="v9.9.9-test"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("dev's /metrics lacks %s", want)
		}
	}
	for _, want := range []string{"web UI (asynqmon): http://" + addr + "/ui/", "cachekeeper page: http://" + addr + "/caches",
		"asynqmon's Schedulers page lists only asynq's own scheduler", "try redis-cli HGETALL user:13"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "localhost:9090": true,
		":9090": false, "0.0.0.0:9090": false, "10.0.0.1:9090": false, "nonsense": false} {
		if devmode.IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%q) = %v", addr, !want)
		}
	}
	err = devmode.Run(ctx, devmode.Options{Out: io.Discard, Rounds: 1, HTTPAddr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "must be loopback") {
		t.Errorf("Run on 0.0.0.0: %v, want a refusal", err)
	}
}
