package cli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// A running whole-table warm cancelled with `task cancel` stops, is
// archived with the reason "cancelled" and is not retried; its checkpoint
// stays, and `task run` resumes it from there to the end.
func TestTaskCancelArchivesAndKeepsCheckpoint(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 3000
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?) INSERT INTO users SELECT i, 'u' || i || '@x' FROM n`, rows); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	cfgPath := filepath.Join(dir, "ck.yaml")
	body := fmt.Sprintf("redis:\n  url: %s\ndatabase:\n  url: sqlite://%s\nwarm:\n  page_size: 100\n"+
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: \"SELECT id, email FROM users WHERE id IN (?)\"\n"+
		"    all: \"SELECT id, email FROM users WHERE id > ? ORDER BY id LIMIT ?\"\n", r.URL, dbPath)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	worker := make(chan result, 1)
	go func() {
		worker <- run(t, ctx, nil, "worker", "-c", cfgPath, "--metrics-addr", "", "--servers", "1", "--log-level", "error")
	}()
	waiter := make(chan result, 1)
	go func() {
		waiter <- run(t, ctx, nil, "enqueue", "warm-all", "-c", cfgPath, "--cache", "user", "--max-keys-per-second", "1000",
			"--task-id", "wa1", "--wait", "--wait-timeout", "60s")
	}()
	progress := func(info *asynq.TaskInfo) (p struct {
		RowsDone    int64 `json:"rows_done"`
		ResumedFrom int64 `json:"resumed_from"`
		Done        bool  `json:"done"`
	}) {
		_ = json.Unmarshal(info.Result, &p)
		return p
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := insp.GetTaskInfo("low", "wa1")
		if err == nil && info.State == asynq.TaskStateActive && progress(info).RowsDone >= 300 {
			break
		}
		if err == nil && info.State == asynq.TaskStateArchived || time.Now().After(deadline) {
			t.Fatalf("warm_all not running with 300 rows done after 20s: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := run(t, ctx, nil, "task", "cancel", "wa1", "-c", cfgPath)
	if res.code != 0 || !strings.Contains(res.stdout, `cancelled: archived with reason "cancelled", not retried`) {
		t.Fatalf("task cancel: %+v", res)
	}
	t.Logf("task cancel: %s", strings.TrimSpace(res.stdout))
	info, err := insp.GetTaskInfo("low", "wa1")
	if err != nil || info.State != asynq.TaskStateArchived || info.Retried != 0 || !strings.HasPrefix(info.LastErr, "cancelled") {
		t.Fatalf("after cancel: %+v, %v; want archived, never retried, reason cancelled", info, err)
	}
	stoppedAt := progress(info).RowsDone
	select {
	case res := <-waiter:
		if res.code != 1 || !strings.Contains(res.stdout+res.stderr, "archived") {
			t.Fatalf("enqueue --wait of the cancelled job: %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("enqueue --wait did not return after the cancel")
	}
	if n, _ := r.Client.Exists(ctx, keys.Default().WarmAllCheckpoint("user")).Result(); n != 1 {
		t.Fatal("the cancelled warm_all's checkpoint is gone")
	}
	// Still archived a while later: nothing retries it.
	time.Sleep(1500 * time.Millisecond)
	if info, _ := insp.GetTaskInfo("low", "wa1"); info.State != asynq.TaskStateArchived {
		t.Fatalf("the cancelled job became %s", info.State)
	}
	res = run(t, ctx, nil, "task", "cancel", "wa1", "-c", cfgPath)
	if res.code != 2 || !strings.Contains(res.stderr, "is archived, not active") {
		t.Fatalf("cancel of an archived task: %+v", res)
	}

	// A deliberate run resumes from the checkpoint.
	res = run(t, ctx, nil, "task", "run", "wa1", "-c", cfgPath)
	if res.code != 0 {
		t.Fatalf("task run: %+v", res)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		info, err = insp.GetTaskInfo("low", "wa1")
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-run not completed in 30s: %+v %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := progress(info)
	if !p.Done || p.ResumedFrom < 300 || p.RowsDone != rows {
		t.Fatalf("re-run progress %+v; want done, %d rows, resumed from the checkpoint (>= 300)", p, rows)
	}
	t.Logf("cancelled after %d rows; the re-run resumed from %d and finished %d", stoppedAt, p.ResumedFrom, p.RowsDone)
	cancel()
	if res := <-worker; res.code != 0 {
		t.Fatalf("worker: %+v", res)
	}
}
