package worker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// A Redis user without access to the events channel: every invalidation
// still succeeds at once (its keys deleted, not retried for the event),
// each missed event is counted, and the state is logged once each way.
func TestEventPublishFailureNeverFailsTheJob(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !strings.HasPrefix(r.URL, "unix://") {
		t.Skipf("needs a private redis-server (%s)", r.URL)
	}
	ctx := context.Background()
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "resetchannels", "&asynq:cancel", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Redis = config.RedisConfig{URL: "unix://app:pw@" + strings.TrimPrefix(r.URL, "unix://")}
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	rdb, err := cfg.Redis.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	logs := &testenv.SyncBuffer{}
	reg := prometheus.NewRegistry()
	client := tasks.NewClientFromRedis(r.Client)
	w, err := worker.New(cfg, worker.Deps{Redis: rdb, Client: client, Registry: reg}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	invalidate := func(key string) {
		t.Helper()
		r.Client.Set(ctx, key, "v", 0)
		if _, err := client.Enqueue(ctx, &tasks.InvalidateArgs{Keys: []string{key}}); err != nil {
			t.Fatal(err)
		}
	}
	succeeded := func() float64 {
		return testutil.ToFloat64(counter(t, reg, tasks.KindInvalidate, worker.OutcomeSuccess))
	}
	failedEvents := func() float64 {
		return testutil.ToFloat64(w.Metrics().EventsFailed.WithLabelValues(tasks.KindInvalidate))
	}
	invalidate("page:1")
	invalidate("page:2")
	waitFor(t, 10*time.Second, func() bool { return succeeded() == 2 })
	if n := r.Client.Exists(ctx, "page:1", "page:2").Val(); n != 0 {
		t.Errorf("%d keys left; the invalidations must stand without their events", n)
	}
	for _, o := range []string{worker.OutcomeRetry, worker.OutcomeFailed} {
		if n := testutil.ToFloat64(counter(t, reg, tasks.KindInvalidate, o)); n != 0 {
			t.Errorf("%v invalidations ended %s because of the event", n, o)
		}
	}
	if n := failedEvents(); n != 2 {
		t.Errorf("events_failed_total = %v, want 2", n)
	}
	if n := logs.Count("cache events cannot be published"); n != 1 {
		t.Errorf("%d log lines for the failing state, want 1", n)
	}
	if err := r.Client.Do(ctx, "ACL", "SETUSER", "app", "&cachekeeper:events").Err(); err != nil {
		t.Fatal(err)
	}
	invalidate("page:3")
	waitFor(t, 10*time.Second, func() bool { return succeeded() == 3 })
	waitFor(t, 5*time.Second, func() bool { return logs.Count("cache events published again") == 1 })
	t.Logf("2 events missed and counted, one line each way; log:\n%s", logs.String())
}
