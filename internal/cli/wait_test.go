package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// --wait rides over Redis going away and coming back: it reports the job's
// real outcome instead of failing on the first read error.
func TestWaitRidesOverARedisRestart(t *testing.T) {
	t.Parallel()
	s := testenv.NewServer(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer rdb.Close()
	c := asynq.NewClientFromRedisClient(rdb)
	info, err := c.Enqueue(asynq.NewTask("test:wait", nil), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- waitForTask(context.Background(), IO{Stdout: &stdout, Stderr: &stderr}, asynq.NewInspectorFromRedisClient(rdb), info, 30*time.Second, "table")
	}()
	time.Sleep(300 * time.Millisecond)
	s.Kill()
	time.Sleep(1500 * time.Millisecond)
	s.Start(t)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait failed although the job finished: %v (stderr %q)", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wait did not return")
	}
	if !strings.Contains(stderr.String(), "retrying while waiting") || !strings.Contains(stdout.String(), "finished") {
		t.Errorf("stdout %q, stderr %q: want a retry note and the job finished", stdout.String(), stderr.String())
	}
}
