package scheduler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/cachekeeper/cachekeeper/scheduler" // external test: testenv imports config, which imports scheduler

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
)

// Three replicas, one Redis, an @every 1s entry: every tick is enqueued
// exactly once, none is missing, and stopping a replica half-way changes
// nothing.
func TestReplicasEnqueueEachTickOnce(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	entries := []EntryConfig{notifyEntry("every-second", "@every 1s")}
	reps := []*replica{
		startReplica(t, r, clock, entries),
		startReplica(t, r, clock, entries),
		startReplica(t, r, clock, entries),
	}
	const ticks = 10
	var want []time.Time
	running := 3
	for i := 1; i <= ticks; i++ {
		waitIdle(t, clock, running)
		clock.Advance(time.Second)
		want = append(want, t0.Add(time.Duration(i)*time.Second))
		if i == ticks/2 {
			// Kill one replica in the middle; the others carry on.
			waitIdle(t, clock, running)
			reps[2].stop(t)
			running = 2
		}
	}
	waitIdle(t, clock, running)

	series := reps[0].s.Entries()[0].Series
	for _, rep := range reps[1:] {
		if got := rep.s.Entries()[0].Series; got != series {
			t.Fatalf("replicas disagree on the series: %s vs %s", got, series)
		}
	}
	got := taskIDs(t, r, "default")
	if wantIDs := tickIDs(series, want...); !equalStrings(got, wantIDs) {
		t.Fatalf("tasks in Redis:\n got %v\nwant %v", got, wantIDs)
	}
	var enqueued, dup int
	for _, rep := range reps {
		enqueued += rep.count("every-second", OutcomeEnqueued)
		dup += rep.count("every-second", OutcomeDuplicate)
		if n := rep.count("every-second", OutcomeFailed) + rep.count("every-second", OutcomeMissed); n != 0 {
			t.Errorf("a replica counted %d failed or missed ticks, want 0", n)
		}
	}
	// Ticks 1-5 seen by 3 replicas, 6-10 by 2: 25 attempts, 10 enqueued.
	if enqueued != ticks || dup != 3*5+2*5-ticks {
		t.Fatalf("metrics: enqueued=%d duplicate=%d, want %d and %d", enqueued, dup, ticks, 3*5+2*5-ticks)
	}

	// The last tick is recorded for catch-up.
	v, err := r.Client.HGet(context.Background(), "cachekeeper:scheduler:last_tick", "every-second").Int64()
	if err != nil || v != want[len(want)-1].Unix() {
		t.Fatalf("last tick record = %d, %v; want %d", v, err, want[len(want)-1].Unix())
	}
}

// A slow replica whose enqueue of a tick arrives after a worker already
// completed that tick's task is still refused, thanks to the retention.
func TestLateDuplicateAfterCompletionIsRefused(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	entries := []EntryConfig{notifyEntry("late", "@every 1s")}
	a := startReplica(t, r, clock, entries)
	waitIdle(t, clock, 1)
	clock.Advance(time.Second)
	waitIdle(t, clock, 1)
	e := a.s.Entries()[0]
	id := e.TaskID(t0.Add(time.Second))

	// A worker takes the task and completes it (what asynq's server does),
	// keeping the record for the entry's retention.
	ctx := context.Background()
	completeTask(t, r, "default", id)

	// A second replica, paused until now, enqueues the same tick.
	b, err := New(Config{Entries: entries}, r.Client, quietLogger(), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	b.FireForTest(ctx, b.Entries()[0], t0.Add(time.Second))
	if n := b.TickCountForTest("late", OutcomeDuplicate); n != 1 {
		t.Fatalf("late replica: duplicate=%d, want 1", n)
	}
	if got := taskIDs(t, r, "default"); !equalStrings(got, []string{id}) {
		t.Fatalf("tasks = %v, want only the completed %s", got, id)
	}
}

// completeTask runs an asynq server on queue until the task id is completed.
func completeTask(t *testing.T, r *testenv.Redis, queue, id string) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(r.Client, asynq.Config{
		Concurrency: 1, Queues: map[string]int{queue: 1},
		TaskCheckInterval: 10 * time.Millisecond, Logger: nopAsynqLogger{}, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	defer srv.Shutdown()
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := insp.GetTaskInfo(queue, id)
		if err == nil && info.State == asynq.TaskStateCompleted {
			return
		}
		if errors.Is(err, asynq.ErrTaskNotFound) {
			return // completed without retention: the record is gone
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not completed within 10s (last: %+v, %v)", id, info, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type nopAsynqLogger struct{}

func (nopAsynqLogger) Debug(...any) {}
func (nopAsynqLogger) Info(...any)  {}
func (nopAsynqLogger) Warn(...any)  {}
func (nopAsynqLogger) Error(...any) {}
func (nopAsynqLogger) Fatal(...any) {}
