package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

func seedUsers(t *testing.T, db *testenv.DB, n int) {
	t.Helper()
	usersTable(t, db)
	if _, err := db.Exec(`INSERT INTO users (id, email, full_name, org_id)
SELECT i, 'u' || i || '@x', 'User ' || i, i % 5 FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
}

func progressOf(t *testing.T, info *asynq.TaskInfo) worker.WarmAllProgress {
	t.Helper()
	var p worker.WarmAllProgress
	if err := json.Unmarshal(info.Result, &p); err != nil {
		t.Fatalf("progress %q: %v", info.Result, err)
	}
	return p
}

// TestWarmAllResumesAfterCrash stops the worker in the middle of a
// whole-table warm (rate-capped so that it is slow), starts a new one, and
// checks that the run resumes from the checkpoint, finishes every row and
// removes the checkpoint; progress is readable while it runs.
func TestWarmAllResumesAfterCrash(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	const n = 3000
	seedUsers(t, db, n)
	edit := func(c *config.Config) {
		c.Warm.PageSize = 100
		c.Worker.ShutdownTimeout = 100 * time.Millisecond
	}
	b := warmSetup(t, db, true, edit)
	ctx := context.Background()
	info, err := b.client.Enqueue(ctx, &tasks.WarmAllArgs{Cache: "user", MaxKeysPerSecond: 2500}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ckKey := keys.Default().WarmAllCheckpoint("user")
	var mid worker.WarmAllProgress
	waitFor(t, 10*time.Second, func() bool {
		ti, err := b.inspect.GetTaskInfo(info.Queue, info.ID)
		if err != nil || ti.State != asynq.TaskStateActive || len(ti.Result) == 0 {
			return false
		}
		mid = progressOf(t, ti)
		return mid.RowsDone >= 500
	})
	if mid.Done || mid.Total != n || mid.RowsPerS <= 0 {
		t.Fatalf("progress while running = %+v; want rows/s, total %d, not done", mid, n)
	}
	b.stop() // the worker goes away mid-run
	var cp struct {
		RowsDone int64  `json:"rows_done"`
		LastID   string `json:"last_id"`
	}
	if err := json.Unmarshal([]byte(b.redis.Client.Get(ctx, ckKey).Val()), &cp); err != nil || cp.RowsDone < 500 || cp.RowsDone >= n {
		t.Fatalf("checkpoint after the stop = %+v (%v); want between 500 and %d rows", cp, err, n)
	}

	// A new worker process picks the job up again and resumes.
	b2 := warmSetupOn(t, b.redis, db, b.cfg)
	b2.start(t)
	done := b2.waitTask(t, info, 20*time.Second)
	p := progressOf(t, done)
	if !p.Done || p.RowsDone != n || p.ResumedFrom < cp.RowsDone || p.ResumedFrom >= n {
		t.Fatalf("final progress = %+v; want done with %d rows, resumed from at least %d", p, n, cp.RowsDone)
	}
	if got := countKeys(t, b, "user:*"); got != n {
		t.Fatalf("%d user keys, want %d", got, n)
	}
	if b.redis.Client.Exists(ctx, ckKey).Val() != 0 {
		t.Fatal("checkpoint left behind after the warm finished")
	}
}

func TestWarmAllResumeAndRestart(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	for i := 1; i <= 250; i++ {
		insertUser(t, db, i, fmt.Sprintf("u%d@x", i), "n")
	}
	b := warmSetup(t, db, true, func(c *config.Config) { c.Warm.PageSize = 40 })
	ctx := context.Background()
	rc := b.redis.Client
	ckKey := keys.Default().WarmAllCheckpoint("user")
	fakeCheckpoint := `{"task_id":"an-earlier-run","last_id":"200","last_id_int":true,"rows_done":200}`

	// Resume: only rows after the checkpoint are read.
	rc.Set(ctx, ckKey, fakeCheckpoint, time.Hour)
	p := progressOf(t, b.runTask(t, &tasks.WarmAllArgs{Cache: "user"}))
	if p.ResumedFrom != 200 || p.RowsDone != 250 || p.Written != 50 {
		t.Fatalf("resume: %+v; want 50 rows written after the checkpoint at 200", p)
	}
	if rc.Exists(ctx, "user:200").Val() != 0 || rc.Exists(ctx, "user:201").Val() != 1 {
		t.Fatal("resume wrote rows before the checkpoint or skipped the one after it")
	}
	if rc.Exists(ctx, ckKey).Val() != 0 {
		t.Fatal("checkpoint not deleted when done")
	}

	// Restart: the checkpoint is ignored and every row is read.
	rc.Set(ctx, ckKey, fakeCheckpoint, time.Hour)
	p = progressOf(t, b.runTask(t, &tasks.WarmAllArgs{Cache: "user", Restart: true}))
	if p.ResumedFrom != 0 || p.RowsDone != 250 || p.Written != 250 {
		t.Fatalf("restart: %+v; want all 250 rows", p)
	}
	if got := countKeys(t, b, "user:*"); got != 250 {
		t.Fatalf("%d keys after restart, want 250", got)
	}
}

func TestWarmAllWithoutAllQueryIsArchived(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	usersTable(t, db)
	b := warmSetup(t, db, true, func(c *config.Config) {
		cs := c.Caches["user"]
		cs.All = ""
		c.Caches["user"] = cs
	})
	info, err := b.client.WarmAll(context.Background(), "user")
	if err != nil {
		t.Fatal(err)
	}
	var got *asynq.TaskInfo
	waitFor(t, 10*time.Second, func() bool {
		got, err = b.inspect.GetTaskInfo(info.Queue, info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	})
	if got.Retried != 0 || got.LastErr == "" {
		t.Fatalf("archived after %d retries with %q", got.Retried, got.LastErr)
	}
}
