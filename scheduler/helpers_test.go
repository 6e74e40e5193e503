package scheduler_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	. "github.com/cachekeeper/cachekeeper/scheduler" // external test: testenv imports config, which imports scheduler

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// t0 is a whole minute, so @every 1s/10s/5s ticks fall on t0 + n*interval.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func quietLogger() *slog.Logger {
	if os.Getenv("SCHED_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// replica is one running Scheduler with its own Redis client and registry.
type replica struct {
	s      *Scheduler
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startReplica builds a scheduler on its own connection pool to r and runs it
// until stop or the end of the test.
func startReplica(t *testing.T, r *testenv.Redis, clock Clock, entries []EntryConfig, tune ...func(*Config)) *replica {
	t.Helper()
	opt, err := r.Config.Options()
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true // so EnqueueTimeout bounds a stuck command
	rdb := redis.NewClient(opt)
	reg := prometheus.NewRegistry()
	cfg := Config{Entries: entries, Registerer: reg, EnqueueTimeout: 2 * time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	s, err := New(cfg, rdb, quietLogger(), WithClock(clock))
	if err != nil {
		_ = rdb.Close()
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep := &replica{s: s, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rep.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		rep.stop(t)
		_ = rdb.Close()
	})
	return rep
}

// stop cancels the replica and waits for Run to return nil.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("scheduler did not stop within 10s")
	}
}

func (r *replica) count(entry, outcome string) int {
	return r.s.TickCountForTest(entry, outcome)
}

// waitIdle waits until n replicas are waiting for their next tick.
func waitIdle(t *testing.T, clock *FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.WaitForTimers(ctx, n); err != nil {
		t.Fatalf("%d scheduler(s) did not come back to waiting within 10s (%d timers pending)", n, clock.Timers())
	}
}

// waitReloaded waits until s's Run loop has seen every accepted Reload and
// armed its timer for the new entries.
func waitReloaded(t *testing.T, s *Scheduler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.ReloadSettledForTest() {
		if time.Now().After(deadline) {
			t.Fatal("Run loop did not pick up the reload within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// taskIDs returns the ids of every task in queue, in any state we use.
func taskIDs(t *testing.T, r *testenv.Redis, queue string) []string {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	var ids []string
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		insp.ListPendingTasks, insp.ListCompletedTasks, insp.ListArchivedTasks,
	} {
		infos, err := list(queue, asynq.PageSize(1000))
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatalf("list tasks of %s: %v", queue, err)
		}
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func tickIDs(series string, ticks ...time.Time) []string {
	out := make([]string, len(ticks))
	for i, tk := range ticks {
		out[i] = series + ":" + strconv.FormatInt(tk.Unix(), 10)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func notifyEntry(name, schedule string) EntryConfig {
	return EntryConfig{
		Name: name, Schedule: schedule, Kind: "notify:publish",
		Args: map[string]any{"channel": "ticks", "message": name},
	}
}
