package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// commandCalls returns the calls of every command the server ran, by name.
func commandCalls(t *testing.T, r *testenv.Redis) map[string]int {
	t.Helper()
	info, err := r.Client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[name] = n
	}
	return out
}

// An idle worker with the default layout (4 servers, 3 queues, the fast
// lane) waits for work instead of polling: a few Redis commands a second,
// and a job sent to the idle default queue is still picked up at once.
func TestIdleWorkerIsQuietAndQuick(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	client := tasks.NewClientFromRedis(r.Client)
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: client, Registry: prometheus.NewRegistry()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop within 10s")
		}
	}()
	waitFor(t, 5*time.Second, w.Ready)
	time.Sleep(2 * time.Second) // every server has found its queues empty
	const window = 10 * time.Second
	before := commandCalls(t, r)
	time.Sleep(window)
	after := commandCalls(t, r)
	type rate struct {
		name string
		n    int
	}
	var rates []rate
	total := 0
	for name, n := range after {
		if d := n - before[name]; d > 0 && name != "info" {
			rates = append(rates, rate{name, d})
			total += d
		}
	}
	sort.Slice(rates, func(i, j int) bool { return rates[i].n > rates[j].n })
	perS := float64(total) / window.Seconds()
	t.Logf("idle worker (4 servers, 3 queues, fast lane): %.1f Redis commands/s; top: %v", perS, rates)
	if perS > 30 {
		t.Fatalf("idle worker sends %.1f Redis commands/s, want at most 30", perS)
	}

	// Pickup on the idle default queue (not the fast lane's).
	sub := r.Client.Subscribe(ctx, "pickup")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for i := range 20 {
		time.Sleep(100 * time.Millisecond) // idle again
		start := time.Now()
		if _, err := client.Enqueue(ctx, &tasks.NotifyArgs{Channel: "pickup", Message: fmt.Sprint(i)}, tasks.Queue("default")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.Channel():
		case <-time.After(10 * time.Second):
			t.Fatal("job not run within 10s")
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("pickup on the idle default queue, enqueue to run: median %s, max %s", lat[len(lat)/2], lat[len(lat)-1])
	if lat[len(lat)/2] > 500*time.Millisecond {
		t.Fatalf("median pickup %s: the idle servers do not wake on a job", lat[len(lat)/2])
	}
}
