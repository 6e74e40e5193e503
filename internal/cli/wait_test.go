package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
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

// An enqueue during a Redis restart is retried and lands exactly once.
func TestEnqueueRidesOverARedisRestart(t *testing.T) {
	t.Parallel()
	s := testenv.NewServer(t, "--appendonly", "yes", "--appendfsync", "always")
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer rdb.Close()
	svc := &services{redis: rdb, client: tasks.NewClientFromRedis(rdb)}
	s.Kill()
	var stderr bytes.Buffer
	type result struct {
		info *asynq.TaskInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := enqueueRiding(context.Background(), IO{Stdout: &bytes.Buffer{}, Stderr: &stderr}, svc,
			&tasks.NotifyArgs{Channel: "c", Message: "m"}, nil, "")
		done <- result{info, err}
	}()
	time.Sleep(time.Second)
	s.Start(t)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("enqueue failed although Redis came back: %v", r.err)
		}
		n, err := asynq.NewInspectorFromRedisClient(rdb).GetQueueInfo(r.info.Queue)
		if err != nil || n.Pending != 1 {
			t.Fatalf("queue %s: %+v, %v; want exactly one pending job", r.info.Queue, n, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("enqueue did not return")
	}
	if !strings.Contains(stderr.String(), "retrying") {
		t.Errorf("stderr %q: want a retry note", stderr.String())
	}
}
