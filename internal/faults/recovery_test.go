package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// recoveryBound is what docs/reliability.md promises for a dead worker's job.
const recoveryBound = 15 * time.Second

// usersTable creates a users table of n rows in a schema of its own.
func usersTable(t *testing.T, n int) *testenv.DB {
	t.Helper()
	db := testenv.Postgres(t)
	if _, err := db.Exec(`CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, full_name text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users SELECT g, 'u' || g || '@example.com', 'User ' || g FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	return db
}

// warmConfig is a worker configuration with a user cache over db's table
// and a second cache, slow, over its first rows only.
func warmConfig(redisURL, dbURL string, rate int, extra string) string {
	return fmt.Sprintf(`redis: {url: %q}
database: {url: %q}
worker:
  concurrency: 1
  servers: 1
  shutdown_timeout: 3s
  metrics_addr: ""
  fast_lane: {queue: ""}
%s
log: {format: json}
warm: {page_size: 1000, max_keys_per_second: %d}
caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email, full_name AS name FROM users WHERE id IN (?)"
    all: "SELECT id, email, full_name AS name FROM users WHERE id > ? ORDER BY id LIMIT ?"
  slow:
    key: "slow:{id}"
    ttl: 1h
    by_ids: "SELECT id, email FROM users WHERE id IN (?)"
    all: "SELECT id, email FROM users WHERE id > ? AND id <= 48000 ORDER BY id LIMIT ?"
`, redisURL, dbURL, extra, rate)
}

// warmSetup gives a warm test its Redis, a users table of rows rows, a
// worker configuration warming at rate rows/s, a client and an inspector.
func warmSetup(t *testing.T, rows, rate int) (*testenv.Redis, *testenv.DB, string, *tasks.Client, *asynq.Inspector) {
	t.Helper()
	r := testenv.NewRedis(t)
	db := usersTable(t, rows)
	cfg := writeConfig(t, warmConfig(r.URL, db.Config.URL, rate, ""))
	return r, db, cfg, tasks.NewClientFromRedis(r.Client), asynq.NewInspectorFromRedisClient(r.Client)
}

func checkpointRows(ctx context.Context, rdb redis.UniversalClient, cache string) int64 {
	k, _ := keys.New("cachekeeper:")
	data, err := rdb.Get(ctx, k.WarmAllCheckpoint(cache)).Bytes()
	if err != nil {
		return 0
	}
	var cp struct {
		RowsDone int64 `json:"rows_done"`
	}
	_ = json.Unmarshal(data, &cp)
	return cp.RowsDone
}

// TestSIGKILLMidWarmAll kills a worker with SIGKILL in the middle of a
// warm_all of 100k rows while a second worker runs a long job of its own.
// The killed worker's job is re-run by the survivor within recoveryBound,
// once, from its checkpoint; the survivor's own job (running longer than
// recover_after) is never taken from it; every row ends cached, equal to
// its row, with a TTL.
func TestSIGKILLMidWarmAll(t *testing.T) {
	t.Parallel()
	const rows = 100_000
	ctx := context.Background()
	r, db, cfg, client, insp := warmSetup(t, rows, 12000)

	a := startedWorker(t, "worker A", cfg)
	big, err := client.WarmAll(ctx, "user", asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "worker A runs the warm_all", func() bool { return taskState(insp, big.Queue, big.ID) == asynq.TaskStateActive })

	b := startedWorker(t, "worker B", writeConfig(t, warmConfig(r.URL, db.Config.URL, 4000, "")))
	// B's own job lasts about 12s at 4000 rows/s, longer than recover_after.
	slow, err := client.WarmAll(ctx, "slow", asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "worker B runs its own job", func() bool { return taskState(insp, slow.Queue, slow.ID) == asynq.TaskStateActive })
	waitUntil(t, 30*time.Second, "30k rows checkpointed", func() bool { return checkpointRows(ctx, r.Client, "user") >= 30_000 })

	killed := a.signal(t, syscall.SIGKILL)
	at := checkpointRows(ctx, r.Client, "user")
	a.waitExit(t, 5*time.Second)
	took := waitUntil(t, recoveryBound, "the killed worker's warm_all re-run", func() bool {
		return b.count("warm_all resumes from checkpoint") > 0
	})
	t.Logf("SIGKILL at %d of %d rows: warm_all re-run by the other worker %.2fs after the kill (bound %s)", at, rows, time.Since(killed).Seconds(), recoveryBound)
	_ = took
	waitUntil(t, 60*time.Second, "both warm_all jobs completed", func() bool {
		return taskState(insp, big.Queue, big.ID) == asynq.TaskStateCompleted && taskState(insp, slow.Queue, slow.ID) == asynq.TaskStateCompleted
	})
	if n := b.count("warm_all resumes from checkpoint"); n != 1 {
		t.Errorf("warm_all resumed %d times on worker B, want exactly once", n)
	}
	if n := b.count(`"cache":"slow","last_id"`); n != 0 {
		t.Errorf("the live worker's own job was re-run (%d resumes)", n)
	}
	if info, err := insp.GetTaskInfo(slow.Queue, slow.ID); err != nil || info.Retried != 0 {
		t.Errorf("live worker's job: %+v, %v; want it run once, never retried", info, err)
	}
	checkCached(t, ctx, r.Client, rows)
}

// checkCached checks every user:{id} hash against its row and its TTL.
func checkCached(t *testing.T, ctx context.Context, rdb *redis.Client, rows int) {
	t.Helper()
	bad := 0
	for lo := 1; lo <= rows; lo += 1000 {
		pipe := rdb.Pipeline()
		var gets []*redis.MapStringStringCmd
		var ttls []*redis.DurationCmd
		for id := lo; id < lo+1000 && id <= rows; id++ {
			k := "user:" + strconv.Itoa(id)
			gets = append(gets, pipe.HGetAll(ctx, k))
			ttls = append(ttls, pipe.TTL(ctx, k))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, g := range gets {
			id := lo + i
			h := g.Val()
			if h["email"] != fmt.Sprintf("u%d@example.com", id) || h["name"] != fmt.Sprintf("User %d", id) || ttls[i].Val() <= 0 {
				if bad < 5 {
					t.Errorf("user:%d = %v ttl %v; want its row with a TTL", id, h, ttls[i].Val())
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys wrong", bad, rows)
	}
	t.Logf("all %d keys present, equal to their rows, with a TTL", rows)
}

// TestSIGTERMDuringWork stops a worker with SIGTERM while a warm_all runs:
// the process is gone within worker.shutdown_timeout plus one second, the
// job is back in its queue, and the next worker resumes it from its
// checkpoint.
func TestSIGTERMDuringWork(t *testing.T) {
	t.Parallel()
	const rows = 30_000
	ctx := context.Background()
	r, _, cfg, client, insp := warmSetup(t, rows, 3000)
	a := startedWorker(t, "worker A", cfg)
	job, err := client.WarmAll(ctx, "user", asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "5k rows checkpointed", func() bool { return checkpointRows(ctx, r.Client, "user") >= 5000 })
	sent := a.signal(t, syscall.SIGTERM)
	a.waitExit(t, 10*time.Second)
	took := time.Since(sent)
	t.Logf("SIGTERM with shutdown_timeout 3s: process gone after %.2fs (bound 4s)", took.Seconds())
	if took > 4*time.Second {
		t.Errorf("process took %s to exit, want at most shutdown_timeout + 1s = 4s", took)
	}
	if st := taskState(insp, job.Queue, job.ID); st != asynq.TaskStatePending {
		t.Errorf("interrupted job is %v, want pending (back in its queue)", st)
	}
	b := startWorker(t, "worker B", cfg)
	waitUntil(t, 40*time.Second, "job completed by the next worker", func() bool { return taskState(insp, job.Queue, job.ID) == asynq.TaskStateCompleted })
	if b.count("warm_all resumes from checkpoint") != 1 {
		t.Errorf("the next worker did not resume from the checkpoint")
	}
	checkCached(t, ctx, r.Client, rows)
}
