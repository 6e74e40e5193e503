package faults

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// fencedLines are what a worker logs when it leaves a job another worker
// took over: its copy stopped, or not started, and its outcome not written.
var fencedLines = []string{"stopped jobs: taken over", "job not started", "its outcome is not written", "left the job to the worker that took it over"}

func countAny(p *proc, lines []string) int {
	n := 0
	for _, l := range lines {
		n += p.count(l)
	}
	return n
}

// cutOffCase runs a warm_all on worker A, cuts A off with cut, lets worker B
// take the job over, restores A with restore after hold, and checks that
// the job ran on B once more only (resumed from its checkpoint), that A
// stopped its copy without writing a retry, and that every row is cached.
func cutOffCase(t *testing.T, aRedisURL string, r *testenv.Redis, db *testenv.DB, cut, restore func(a *proc), hold time.Duration) {
	t.Helper()
	const rows = 60_000
	ctx := context.Background()
	client := tasks.NewClientFromRedis(r.Client)
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	a := startedWorker(t, "worker A", writeConfig(t, warmConfig(aRedisURL, db.Config.URL, 3000, "")))
	job, err := client.WarmAll(ctx, "user", asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "worker A runs the warm_all", func() bool { return taskState(insp, job.Queue, job.ID) == asynq.TaskStateActive })
	b := startedWorker(t, "worker B", writeConfig(t, warmConfig(r.URL, db.Config.URL, 6000, "")))
	waitUntil(t, 30*time.Second, "6k rows checkpointed", func() bool { return checkpointRows(ctx, r.Client, "user") >= 6000 })

	cut(a)
	cutAt := time.Now()
	waitUntil(t, recoveryBound, "worker B takes the job over", func() bool { return b.count("warm_all resumes from checkpoint") > 0 })
	t.Logf("worker B took the job over %.2fs after A was cut off", time.Since(cutAt).Seconds())
	time.Sleep(time.Until(cutAt.Add(hold)))
	restore(a)
	took := waitUntil(t, 10*time.Second, "worker A leaves the job to B", func() bool { return countAny(a, fencedLines) > 0 })
	t.Logf("worker A back after %s: left the job to B within %.2fs", hold, took.Seconds())

	waitUntil(t, 60*time.Second, "warm_all completed", func() bool { return taskState(insp, job.Queue, job.ID) == asynq.TaskStateCompleted })
	info, err := insp.GetTaskInfo(job.Queue, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 0 || info.LastErr != "" {
		t.Errorf("task retried %d times (last error %q): the cut-off copy wrote its outcome over the run of the worker that took it over", info.Retried, info.LastErr)
	}
	if n := b.count("warm_all resumes from checkpoint"); n != 1 {
		t.Errorf("worker B resumed the job %d times, want once", n)
	}
	if n := a.count("warm_all resumes from checkpoint") + strings.Count(a.logs.String(), `"msg":"warm_all done"`); n != 0 {
		t.Errorf("worker A ran the job again or finished its copy (%d lines)", n)
	}
	if n := a.count("requeued jobs of a dead worker"); n != 0 {
		t.Errorf("worker A requeued jobs after it came back (%d lines)", n)
	}
	t.Logf("job completed once by B, never retried; A's copy stopped %.2fs after it came back", took.Seconds())
	checkCached(t, ctx, r.Client, rows)
}

// TestSIGSTOPMidWarmAll pauses a worker with SIGSTOP for 25s in the middle
// of a warm_all: the other worker takes the job over from its checkpoint
// after recover_after; on SIGCONT the paused worker stops its copy at once
// and writes nothing about the job (no retry, no requeue), so the job runs
// on the other worker only and is never retried.
func TestSIGSTOPMidWarmAll(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	db := usersTable(t, 60_000)
	cutOffCase(t, r.URL, r, db,
		func(a *proc) { a.signal(t, syscall.SIGSTOP) },
		func(a *proc) { a.signal(t, syscall.SIGCONT) }, 25*time.Second)
}

// TestStalledConnectionMidWarmAll stalls every connection of a worker to
// Redis (a TCP proxy that holds the bytes, no FIN: a lost network path) for
// 20s in the middle of a warm_all: the other worker takes the job over; when
// the path comes back the stalled worker stops its copy and writes nothing
// about the job.
func TestStalledConnectionMidWarmAll(t *testing.T) {
	t.Parallel()
	srv := testenv.NewServer(t)
	r := testenv.Connect(t, "redis://"+srv.Addr)
	proxy := testenv.NewProxy(t, srv.Addr)
	db := usersTable(t, 60_000)
	cutOffCase(t, "redis://"+proxy.Addr, r, db,
		func(*proc) { proxy.Stall() },
		func(*proc) { proxy.Resume() }, 20*time.Second)
}
