package devmode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DemoWarm shows cache warming on the demo's users table, narrating on out:
// twenty single-id warms of ten users coalesced into a batch, a batched
// warm in which one id has no row (its stale key is deleted), and a
// whole-table warm_all with its progress report. It expects a running worker
// with config.DemoCaches() over the demo database.
func DemoWarm(ctx context.Context, client *tasks.Client, rdb redis.UniversalClient, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, "[warm] "+format+"\n", a...) }
	insp := asynq.NewInspectorFromRedisClient(rdb)

	// 1. Coalescing: single-id warms wait in the cache's pending set and run as one batch.
	for range 2 {
		for id := 1; id <= 10; id++ {
			if err := client.WarmCache(ctx, "user", id); err != nil {
				return err
			}
		}
	}
	say("asked 20 times for single-id warms (users 1-10, each twice) with client.WarmCache: one Redis call each, no job; the ids wait in %s",
		keys.Default().WarmPending("user"))
	start := time.Now()
	want := make([]string, 10)
	for i := range want {
		want[i] = fmt.Sprintf("user:%d", i+1)
	}
	if err := waitCached(ctx, rdb, want...); err != nil {
		return err
	}
	say("users 1-10 cached %s later by a coalesced cache:warm (each id read once per job); user:1 = %v",
		time.Since(start).Round(100*time.Millisecond), rdb.HGetAll(ctx, "user:1").Val())

	// 2. A batch in which one id has no row: its (stale) key is deleted.
	if err := rdb.HSet(ctx, "user:9999", "id", "9999", "email", "ghost@example.com").Err(); err != nil {
		return err
	}
	info, err := client.Enqueue(ctx, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"11", "12", "9999"}}, tasks.Retention(time.Minute))
	if err != nil {
		return err
	}
	done, err := waitDone(ctx, insp, info)
	if err != nil {
		return err
	}
	say("cache:warm ids [11 12 9999] -> %s; user:9999 (no such row) exists: %d, user:12 TTL %s",
		done.Result, rdb.Exists(ctx, "user:9999").Val(), rdb.TTL(ctx, "user:12").Val().Round(time.Second))

	// 3. The whole table, keyset pages, checkpointed, with progress.
	info, err = client.Enqueue(ctx, &tasks.WarmAllArgs{Cache: "user", Restart: true}, tasks.Retention(time.Minute))
	if err != nil {
		return err
	}
	done, err = waitDone(ctx, insp, info)
	if err != nil {
		return err
	}
	var p worker.WarmAllProgress
	if err := json.Unmarshal(done.Result, &p); err != nil {
		return fmt.Errorf("warm_all progress %q: %w", done.Result, err)
	}
	say("cache:warm_all: %d of %d rows in %.3fs (%.0f rows/s); every user is cached (the invalidate step below deletes them again; user:13 stays cached after the tag step)",
		p.RowsDone, p.Total, p.ElapsedS, p.RowsPerS)
	return nil
}

// waitDone polls a task kept with Retention until it completes; an archived
// task is an error carrying its last error.
func waitDone(ctx context.Context, insp *asynq.Inspector, info *asynq.TaskInfo) (*asynq.TaskInfo, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ti, err := insp.GetTaskInfo(info.Queue, info.ID)
		switch {
		case err != nil && !errors.Is(err, asynq.ErrTaskNotFound):
			return nil, err
		case err == nil && ti.State == asynq.TaskStateCompleted:
			return ti, nil
		case err == nil && ti.State == asynq.TaskStateArchived:
			return nil, fmt.Errorf("%s %s failed: %s", ti.Type, ti.ID, ti.LastErr)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s %s not done: %w", info.Type, info.ID, ctx.Err())
		case <-t.C:
		}
	}
}
