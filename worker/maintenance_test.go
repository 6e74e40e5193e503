package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// The session and rate-limit jobs through a running worker; the jobs
// themselves are tested in session/ and ratelimit/.

// sessWorker starts a worker on a private Redis with fast polling.
func sessWorker(t *testing.T, r *testenv.Redis, mutate func(*config.Config)) (*tasks.Client, *asynq.Inspector, config.Config) {
	t.Helper()
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers, cfg.Worker.Concurrency = 1, 2
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	client := tasks.NewClientFromRedis(r.Client)
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: client}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("worker did not stop within 10s")
		}
	})
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	return client, insp, cfg
}

// sessTaskResult waits for a task to complete and decodes its result into v.
func sessTaskResult(t *testing.T, insp *asynq.Inspector, info *asynq.TaskInfo, v any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ti, err := insp.GetTaskInfo(info.Queue, info.ID)
		if err == nil && ti.State == asynq.TaskStateCompleted {
			if err := json.Unmarshal(ti.Result, v); err != nil {
				t.Fatalf("result %q: %v", ti.Result, err)
			}
			return
		}
		if err == nil && ti.LastErr != "" {
			t.Fatalf("task failed: %s", ti.LastErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not completed within 10s (state %v, err %v)", info.ID, ti, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionJobsThroughTheWorker(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	testenv.MessySessions(t, r.Client)
	client, insp, cfg := sessWorker(t, r, func(c *config.Config) { c.Sessions.IdleTimeout = time.Hour })

	info, err := client.CleanupSessions(ctx, tasks.SessionCleanupArgs{}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rep session.CleanupReport
	sessTaskResult(t, insp, info, &rep)
	if rep.Expired != 3 || rep.FixedTTL != 3 || rep.Unparseable != 3 || rep.IndexMembersPruned != 4 {
		t.Fatalf("cleanup result = %+v", rep)
	}

	sub := r.Client.Subscribe(ctx, cfg.Events.Channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	info, err = client.RevokeSessions(ctx, "alice", tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rev session.RevokeReport
	sessTaskResult(t, insp, info, &rev)
	if rev.Deleted != 1 || rev.Via != "index" || r.Client.Exists(ctx, "session:fresh").Val() != 0 {
		t.Fatalf("revoke result = %+v", rev)
	}
	select {
	case m := <-sub.Channel():
		var ev events.Event
		if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != events.TypeSessionRevoked || ev.UserID != "alice" || ev.KeyCount != 1 || ev.TaskID != info.ID {
			t.Fatalf("event = %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no session.revoked event within 10s")
	}
}

func TestPruneRateLimitsThroughTheWorker(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	testenv.MessyRateLimits(t, r.Client, testenv.ServerNow(t, r.Client))
	client, insp, _ := sessWorker(t, r, nil)
	info, err := client.PruneRateLimits(ctx, tasks.RateLimitPruneArgs{}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	sessTaskResult(t, insp, info, &rep)
	for field, want := range map[string]float64{"scanned": 4, "entries_removed": 6, "keys_deleted": 1, "ttl_fixed": 1} {
		if rep[field] != want {
			t.Errorf("result %s = %v, want %v (result %v)", field, rep[field], want, rep)
		}
	}
	if _, ok := rep["bytes_reclaimed"]; !ok {
		t.Errorf("result has no bytes_reclaimed: %v", rep)
	}
}
