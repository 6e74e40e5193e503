package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDatabaseDown starts a worker with its database unreachable (a cut
// proxy in front of the shared PostgreSQL), then cuts it again mid-run.
// The worker starts and runs Redis-only jobs; /readyz says degraded with
// 200; database jobs fail with a clear error, retry, are archived when
// their retries run out; the outage is logged once; when the database is
// back, `cachekeeper task run` brings an archived job back and it succeeds.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testenv.NewRedis(t)
	db := usersTable(t, 100)
	proxy := testenv.NewProxy(t, "127.0.0.1:5432")
	u, err := url.Parse(db.Config.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.Addr
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, strings.Replace(warmConfig(r.URL, u.String(), 0, ""), `metrics_addr: ""`, fmt.Sprintf("metrics_addr: %q", metrics), 1))
	client := tasks.NewClientFromRedis(r.Client)
	insp := asynq.NewInspectorFromRedisClient(r.Client)

	proxy.Cut()
	w := startedWorker(t, "worker", cfg)
	var body string
	waitUntil(t, 10*time.Second, "/readyz degraded", func() bool {
		code, b := readyz(metrics)
		body = b
		return code == 200 && strings.Contains(b, `"status":"degraded"`)
	})
	t.Logf("/readyz with the database down: %s", strings.TrimSpace(body))

	// A Redis-only job runs.
	r.Client.Set(ctx, "user:7", "stale", time.Hour)
	inv, err := client.InvalidateKeys(ctx, []string{"user:7"}, asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "invalidation ran with the database down", func() bool {
		return taskState(insp, inv.Queue, inv.ID) == asynq.TaskStateCompleted
	})
	// A database job fails with a clear error and, out of retries, is archived.
	warm, err := client.WarmCacheIDs(ctx, "user", []string{"7"}, asynq.MaxRetry(0), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "warm archived", func() bool { return taskState(insp, warm.Queue, warm.ID) == asynq.TaskStateArchived })
	info, _ := insp.GetTaskInfo(warm.Queue, warm.ID)
	if !strings.Contains(info.LastErr, "database unreachable") {
		t.Errorf("archived warm's error %q does not say the database is unreachable", info.LastErr)
	}
	time.Sleep(5 * time.Second) // a few probes more
	if n := w.count("database unreachable: jobs that read it fail"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}

	restored := time.Now()
	proxy.Restore()
	waitUntil(t, 10*time.Second, "/readyz ready", func() bool {
		code, b := readyz(metrics)
		return code == 200 && strings.Contains(b, `"status":"ready"`)
	})
	t.Logf("database back: worker saw it after %.2fs", time.Since(restored).Seconds())
	out, err := exec.Command(binary, "task", "run", "--config", cfg, warm.ID).CombinedOutput()
	if err != nil {
		t.Fatalf("task run: %v: %s", err, out)
	}
	waitUntil(t, 10*time.Second, "archived warm succeeds after task run", func() bool {
		return taskState(insp, warm.Queue, warm.ID) == asynq.TaskStateCompleted
	})
	if got := r.Client.HGet(ctx, "user:7", "email").Val(); got != "u7@example.com" {
		t.Errorf("user:7 email = %q after the re-run", got)
	}

	// Mid-run: cut again; a job with retries left goes to retry with the error.
	proxy.Cut()
	waitUntil(t, 10*time.Second, "/readyz degraded again", func() bool {
		_, b := readyz(metrics)
		return strings.Contains(b, `"status":"degraded"`)
	})
	again, err := client.WarmCacheIDs(ctx, "user", []string{"8"}, asynq.MaxRetry(3), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "warm retrying", func() bool { return taskState(insp, again.Queue, again.ID) == asynq.TaskStateRetry })
	proxy.Restore()
	waitUntil(t, 10*time.Second, "/readyz ready again", func() bool {
		_, b := readyz(metrics)
		return strings.Contains(b, `"status":"ready"`)
	})
	if out, err := exec.Command(binary, "task", "run", "--config", cfg, again.ID).CombinedOutput(); err != nil {
		t.Fatalf("task run: %v: %s", err, out)
	}
	waitUntil(t, 10*time.Second, "retrying warm succeeds", func() bool { return taskState(insp, again.Queue, again.ID) == asynq.TaskStateCompleted })
	if n := w.count("database reachable"); n != 2 {
		t.Errorf("recovery logged %d times, want twice (once per outage)", n)
	}
}
