package faults

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestDelayedJobsOnTime enqueues notifications due in 2 to 3 s and measures
// when each is published against its due time: every one within 1s.
// It also measures the idle worker's script calls per second with the
// default delayed_task_check_interval (250ms on one server) against asynq's
// 5s, in the same run.
func TestDelayedJobsOnTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testenv.NewRedis(t)
	cfg := writeConfig(t, fmt.Sprintf("redis: {url: %q}\nworker: {metrics_addr: \"\"}\nlog: {format: json}\n", r.URL))
	w := startedWorker(t, "worker", cfg)
	sub := r.Client.Subscribe(ctx, "delayed")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	c := asynq.NewClientFromRedisClient(r.Client)
	const n = 10
	due := make([]time.Time, n)
	base := time.Now().Add(2 * time.Second)
	for i := 0; i < n; i++ {
		due[i] = base.Add(time.Duration(i) * 97 * time.Millisecond)
		payload := fmt.Sprintf(`{"channel":"delayed","message":"%d"}`, i)
		if _, err := c.Enqueue(asynq.NewTask("notify:publish", []byte(payload)), asynq.ProcessAt(due[i]), asynq.Queue("default")); err != nil {
			t.Fatal(err)
		}
	}
	var late []time.Duration
	ch := sub.Channel()
	deadline := time.After(10 * time.Second)
	for len(late) < n {
		select {
		case m := <-ch:
			i, _ := strconv.Atoi(m.Payload)
			late = append(late, time.Since(due[i]))
		case <-deadline:
			t.Fatalf("only %d of %d delayed jobs ran within 10s", len(late), n)
		}
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	t.Logf("delayed jobs: start after their due time median %.3fs, max %.3fs (bound 1s)", late[n/2].Seconds(), late[n-1].Seconds())
	if late[n-1] > time.Second {
		t.Errorf("a delayed job started %s after its due time, want within 1s", late[n-1])
	}

	// Redis cost of the check, idle, against asynq's default in the same run.
	fast := idleScripts(t, r.Client, 4*time.Second)
	w.signal(t, 15)
	w.waitExit(t, 10*time.Second)
	slowCfg := writeConfig(t, fmt.Sprintf("redis: {url: %q}\nworker: {metrics_addr: \"\", delayed_task_check_interval: 5s}\nlog: {format: json}\n", r.URL))
	startedWorker(t, "worker 5s", slowCfg)
	slow := idleScripts(t, r.Client, 4*time.Second)
	t.Logf("idle worker (4 servers + fast lane, 3 queues): %.1f script calls/s with delayed_task_check_interval 250ms, %.1f/s with 5s (the forwarder's share: %.1f/s)",
		fast, slow, fast-slow)
}

// idleScripts measures EVAL/EVALSHA calls per second over d.
func idleScripts(t *testing.T, rdb *redis.Client, d time.Duration) float64 {
	t.Helper()
	time.Sleep(time.Second) // let start-up settle
	before := scriptCalls(t, rdb)
	time.Sleep(d)
	return float64(scriptCalls(t, rdb)-before) / d.Seconds()
}

func scriptCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if strings.HasPrefix(line, cmd) {
				f := strings.SplitN(strings.TrimPrefix(line, cmd), ",", 2)[0]
				v, _ := strconv.ParseInt(strings.TrimPrefix(f, "calls="), 10, 64)
				n += v
			}
		}
	}
	return n
}
