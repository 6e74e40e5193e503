package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// activeTask enqueues a task and moves it to active the way asynq's dequeue
// does, with the given lease score (0: no lease entry), and returns its id.
func activeTask(t *testing.T, ctx context.Context, rdb *redis.Client, c *asynq.Client, lease int64) string {
	t.Helper()
	info, err := c.Enqueue(asynq.NewTask("test:job", nil), asynq.Queue("default"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.LRem(ctx, keys.AsynqPending("default"), 0, info.ID).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.LPush(ctx, keys.AsynqActive("default"), info.ID)
	rdb.HSet(ctx, keys.AsynqTaskPrefix("default")+info.ID, "state", "active")
	if lease != 0 {
		rdb.ZAdd(ctx, keys.AsynqLease("default"), redis.Z{Score: float64(lease), Member: info.ID})
	}
	return info.ID
}

func TestRecovererHandsBackOnlyAbandonedJobs(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(r.Client)
	now, err := r.Client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	fresh := activeTask(t, ctx, r.Client, c, now.Unix()+30)  // just dequeued by a live worker
	recent := activeTask(t, ctx, r.Client, c, now.Unix()+24) // extended 6s ago: a live worker between heartbeats
	stale := activeTask(t, ctx, r.Client, c, now.Unix()+15)  // not extended for 15s: its worker died
	noLease := activeTask(t, ctx, r.Client, c, 0)            // asynq #1051/#1144
	listed := activeTask(t, ctx, r.Client, c, now.Unix()+15) // stale lease, but a live worker lists it
	listedNoLease := activeTask(t, ctx, r.Client, c, 0)      // no lease, listed: its worker's own lease ends it
	wkey := "asynq:workers:{host:1:sid}"
	r.Client.ZAdd(ctx, keys.AsynqWorkers, redis.Z{Score: float64(now.Unix() + 10), Member: wkey})
	r.Client.HSet(ctx, wkey, listed, "info", listedNoLease, "info")
	// An expired workers hash is a dead server's: what it lists is not live.
	dead := "asynq:workers:{host:2:sid}"
	r.Client.ZAdd(ctx, keys.AsynqWorkers, redis.Z{Score: float64(now.Unix() - 1), Member: dead})
	r.Client.HSet(ctx, dead, stale, "info")

	reg := prometheus.NewRegistry()
	counter, err := recoveredCounter(reg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recoverer{rdb: r.Client, queues: []string{"default"}, staleAfter: 10 * time.Second,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), requeued: counter, fence: newSelfFence(time.Minute, nil, nil)}
	if err := rec.pass(ctx); err != nil {
		t.Fatal(err)
	}
	pending, _ := r.Client.LRange(ctx, keys.AsynqPending("default"), 0, -1).Result()
	active, _ := r.Client.LRange(ctx, keys.AsynqActive("default"), 0, -1).Result()
	want := map[string]bool{stale: true, noLease: true}
	if len(pending) != 2 || !want[pending[0]] || !want[pending[1]] {
		t.Fatalf("pending = %v, want the stale and the lease-less job (%s, %s)", pending, stale, noLease)
	}
	for _, id := range []string{fresh, recent, listed, listedNoLease} {
		if !contains(active, id) {
			t.Errorf("job %s of a live worker was taken from active: active = %v", id, active)
		}
	}
	if got := testutil.ToFloat64(counter); got != 2 {
		t.Errorf("jobs_recovered_total = %v, want 2", got)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	for _, id := range []string{stale, noLease} {
		info, err := insp.GetTaskInfo("default", id)
		if err != nil || info.State != asynq.TaskStatePending {
			t.Errorf("task %s: %v, %v; want pending", id, info, err)
		}
		if score, err := r.Client.ZScore(ctx, keys.AsynqLease("default"), id).Result(); err != redis.Nil {
			t.Errorf("task %s still has a lease %v (%v)", id, score, err)
		}
	}
	// A second pass changes nothing.
	if err := rec.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Client.LLen(ctx, keys.AsynqPending("default")).Result(); n != 2 {
		t.Errorf("second pass: %d pending, want 2", n)
	}
}

func TestRecovererLeavesARepeatOffenderToAsynq(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(r.Client)
	counter, _ := recoveredCounter(nil)
	rec := &recoverer{rdb: r.Client, queues: []string{"default"}, staleAfter: 10 * time.Second,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), requeued: counter, fence: newSelfFence(time.Minute, nil, nil)}
	id := activeTask(t, ctx, r.Client, c, 0)
	for i := 0; i < maxFastRecoveries; i++ {
		if err := rec.pass(ctx); err != nil {
			t.Fatal(err)
		}
		// The job kills its worker again: back to active, no lease.
		if n, _ := r.Client.LRem(ctx, keys.AsynqPending("default"), 0, id).Result(); n != 1 {
			t.Fatalf("pass %d did not requeue the job", i+1)
		}
		r.Client.LPush(ctx, keys.AsynqActive("default"), id)
	}
	if err := rec.pass(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.Client.LLen(ctx, keys.AsynqPending("default")).Result(); n != 0 {
		t.Fatalf("job requeued a %dth time; want it left to asynq", maxFastRecoveries+1)
	}
	// An expired lease: asynq's recoverer retries it, counting the retry.
	if score, err := r.Client.ZScore(ctx, keys.AsynqLease("default"), id).Result(); err != nil || score != 0 {
		t.Fatalf("lease = %v, %v; want an expired lease (0) for asynq's recoverer", score, err)
	}
	if got := testutil.ToFloat64(counter); got != maxFastRecoveries {
		t.Errorf("jobs_recovered_total = %v, want %d", got, maxFastRecoveries)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
