package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// The queue scenario, small: both sides process every task, the result is
// well formed, and nothing of the benchmark is left in Redis.
func TestQueueScenario(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server")
	}
	// The application's data on a shared server: the benchmark must leave it.
	ctx := context.Background()
	if err := r.Client.LPush(ctx, "cachekeeper:inbox", `{"kind":"notify:publish"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.Set(ctx, "user:1", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	const tasks = 2000
	res, err := bench.Queue(ctx, bench.QueueOptions{
		RedisURL: r.URL, Private: true, Tasks: tasks, Rounds: 2, Servers: 2, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "queue" || res.Baseline == "" {
		t.Fatalf("result = %+v", res)
	}
	if res.CachekeeperPerS <= 0 || res.BaselinePerS <= 0 || res.Ratio <= 0 {
		t.Fatalf("rates not measured: %+v", res)
	}
	if want := res.CachekeeperPerS / res.BaselinePerS; res.Ratio < want-0.01 || res.Ratio > want+0.01 {
		t.Fatalf("ratio %.2f, want %.2f", res.Ratio, want)
	}
	for _, k := range []string{"processed", "baseline_processed"} {
		if got, _ := res.Extra[k].(int64); got != 2*tasks {
			t.Errorf("%s = %v, want %d (2 rounds of %d)", k, res.Extra[k], 2*tasks, tasks)
		}
	}
	for _, k := range []string{"enqueue_per_s", "baseline_enqueue_per_s"} {
		if v, _ := res.Extra[k].(float64); v <= 0 {
			t.Errorf("%s = %v", k, res.Extra[k])
		}
	}
	if res.Extra["servers"] != 2 || res.Extra["concurrency"] != 4 {
		t.Errorf("extra = %v", res.Extra)
	}
	assertNoBenchQueues(t, r)
	if n, _ := r.Client.LLen(ctx, "cachekeeper:inbox").Result(); n != 1 {
		t.Errorf("the application's inbox holds %d entries after the benchmark, want 1", n)
	}
	if v, _ := r.Client.Get(ctx, "user:1").Result(); v != "x" {
		t.Errorf("user:1 = %q after the benchmark", v)
	}
}

func TestPickupLatencyScenario(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server")
	}
	res, err := bench.PickupLatency(context.Background(), bench.QueueOptions{
		RedisURL: r.URL, Private: true, Tasks: 1, Samples: 40, BaselineSamples: 10, IdleWindow: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "pickup_latency" {
		t.Fatalf("result = %+v", res)
	}
	t.Logf("%+v", res)
	p50, _ := res.Extra["p50_ms"].(float64)
	p99, _ := res.Extra["p99_ms"].(float64)
	bp50, _ := res.Extra["baseline_p50_ms"].(float64)
	if p50 <= 0 || p99 < p50 || bp50 <= 0 {
		t.Fatalf("percentiles: %v", res.Extra)
	}
	if res.Extra["samples"] != 40 || res.Extra["baseline_samples"] != 10 {
		t.Fatalf("samples: %v", res.Extra)
	}
	// An idle worker polls its servers' queues now and then: never zero.
	if v, _ := res.Extra["idle_redis_cmds_per_s"].(float64); v <= 0 {
		t.Fatalf("idle_redis_cmds_per_s = %v in %v", res.Extra["idle_redis_cmds_per_s"], res.Extra)
	}
	if res.CachekeeperPerS <= 0 || res.BaselinePerS <= 0 {
		t.Fatalf("rates: %+v", res)
	}
	assertNoBenchQueues(t, r)
}

func TestQueueOptionsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o    bench.QueueOptions
		want string
	}{
		{bench.QueueOptions{Tasks: 10}, "--redis-url"},
		{bench.QueueOptions{RedisURL: "redis://127.0.0.1:1/0", Tasks: 0}, "--tasks"},
		{bench.QueueOptions{RedisURL: "redis://127.0.0.1:1/0", Tasks: 1, Servers: 30, Concurrency: 20}, "worker.servers"},
	} {
		_, err := bench.Queue(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one naming %s", tc.o, err, tc.want)
		}
	}
}

// assertNoBenchQueues checks that the benchmark deleted its queues.
func assertNoBenchQueues(t *testing.T, r *testenv.Redis) {
	t.Helper()
	qs, err := r.Client.SMembers(context.Background(), "asynq:queues").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 0 {
		t.Fatalf("queues left behind: %v", qs)
	}
	for _, pattern := range []string{"asynq:{ckbench-*", "ckbench-*", "{ckbench-*"} {
		keys, err := r.Client.Keys(context.Background(), pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Fatalf("%d keys left behind, e.g. %s", len(keys), keys[0])
		}
	}
}
