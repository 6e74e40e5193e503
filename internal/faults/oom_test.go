package faults

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// commandsPerSecond measures what Redis processes over d.
func commandsPerSecond(t *testing.T, r *testenv.Redis, d time.Duration) float64 {
	t.Helper()
	ctx := context.Background()
	read := func() float64 {
		info, err := r.Client.Info(ctx, "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "total_commands_processed:"); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatal("no total_commands_processed in INFO stats")
		return 0
	}
	n0, t0 := read(), time.Now()
	time.Sleep(d)
	return (read() - n0) / time.Since(t0).Seconds()
}

// TestRedisOutOfMemory fills Redis's memory limit (noeviction) under an idle
// worker: it backs off (at most a few hundred commands/s instead of tens of
// thousands), /readyz answers 503 naming the dequeue error, one log line
// per state change, and everything is back once memory is freed.
func TestRedisOutOfMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testenv.NewRedis(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, strings.Replace(notifyConfig(fmt.Sprintf("redis: {url: %q}", r.URL)), `metrics_addr: ""`, fmt.Sprintf("metrics_addr: %q", metrics), 1))
	w := startedWorker(t, "worker", cfg)
	waitUntil(t, 10*time.Second, "/readyz 200", func() bool { code, _ := readyz(metrics); return code == http.StatusOK })
	healthy := commandsPerSecond(t, r, 2*time.Second)

	if err := r.Client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	full := time.Now()
	var body string
	// An idle worker waits on its queues (worker.idle_wait, 10s) instead of
	// polling them: it finds the refusal when that wait ends.
	took := waitUntil(t, 15*time.Second, "/readyz 503 while jobs cannot be dequeued", func() bool {
		code, b := readyz(metrics)
		body = b
		return code == http.StatusServiceUnavailable && strings.Contains(b, "jobs cannot be dequeued")
	})
	t.Logf("/readyz 503 %.2fs after Redis ran out of memory: %s", took.Seconds(), strings.TrimSpace(body))
	time.Sleep(2 * time.Second) // the backoff reaches its ceiling
	refused := commandsPerSecond(t, r, 3*time.Second)
	t.Logf("idle worker (2 servers, fast lane): %.0f commands/s with Redis healthy, %.0f/s while out of memory", healthy, refused)
	if refused > 300 {
		t.Errorf("%.0f commands/s against a full Redis; want at most 300", refused)
	}
	if n := w.count("jobs cannot be dequeued from Redis"); n != 1 {
		t.Errorf("%d log lines for the state change, want 1", n)
	}
	if err := r.Client.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	back := waitUntil(t, 10*time.Second, "/readyz 200 again", func() bool { code, _ := readyz(metrics); return code == http.StatusOK })
	t.Logf("/readyz 200 %.2fs after memory was freed (out of memory for %.1fs)", back.Seconds(), time.Since(full).Seconds())
	if w.count("jobs dequeued again") != 1 {
		t.Errorf("want one `jobs dequeued again` line")
	}
	if n := w.count("requeued jobs of a dead worker"); n != 0 {
		t.Errorf("the worker requeued jobs (%d lines)", n)
	}
}
