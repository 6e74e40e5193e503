package inbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

const inboxKey = "cachekeeper:inbox"

var (
	processingKey = keys.Processing(inboxKey)
	deadKey       = keys.DeadLetter(inboxKey)
)

type bundle struct {
	r       *testenv.Redis
	client  *tasks.Client
	batch   *inbox.BatchEnqueuer
	inspect *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	r := testenv.NewRedis(t)
	batch, err := inbox.NewBatchEnqueuer(r.Client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = batch.Close() })
	return &bundle{r: r, client: tasks.NewClientFromRedis(r.Client), batch: batch, inspect: asynq.NewInspectorFromRedisClient(r.Client)}
}

func (b *bundle) config() inbox.Config {
	return inbox.Config{
		Redis:        b.r.Client,
		NewBlocking:  func() (redis.UniversalClient, error) { return redis.NewClient(b.r.Client.Options()), nil },
		Enqueuer:     b.client,
		Batch:        b.batch,
		Key:          inboxKey,
		BlockTimeout: 50 * time.Millisecond,
		Queues:       tasks.Queues(),
	}
}

// run starts a bridge and returns a function that stops it and waits.
func run(t *testing.T, cfg inbox.Config) (stop func()) {
	t.Helper()
	br, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("bridge did not stop within 5s")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (b *bundle) push(t *testing.T, entries ...string) {
	t.Helper()
	for _, e := range entries {
		if err := b.r.Client.LPush(context.Background(), inboxKey, e).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// tasksIn returns the tasks of queue in the given state.
func (b *bundle) tasksIn(t *testing.T, queue string, state asynq.TaskState) []*asynq.TaskInfo {
	t.Helper()
	var list []*asynq.TaskInfo
	var err error
	switch state {
	case asynq.TaskStatePending:
		list, err = b.inspect.ListPendingTasks(queue)
	case asynq.TaskStateScheduled:
		list, err = b.inspect.ListScheduledTasks(queue)
	}
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	return list
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *bundle) listLen(key string) int64 { return b.r.Client.LLen(context.Background(), key).Val() }

const invalidateUser1 = `{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"max_retry": 3}}`

func TestBridgeEnqueuesEveryEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	var mu sync.Mutex
	outcomes := map[string]int{}
	cfg.OnOutcome = func(o string) { mu.Lock(); outcomes[o]++; mu.Unlock() }
	run(t, cfg)
	b.push(t,
		invalidateUser1,
		invalidateUser1, // pushed twice on purpose: runs twice
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": ["7", "8"]}, "options": {"queue": "low", "task_id": "warm-7"}}`,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": ["7", "8"]}, "options": {"queue": "low", "task_id": "warm-7"}}`, // a duplicate by task id
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [9]}}`,                                                          // coalesced: added to the pending ids
		`{"kind": "notify:publish", "args": {"channel": "c", "message": "m"}, "options": {"process_in": "1h"}}`,
	)
	waitFor(t, "every entry moved", func() bool {
		return b.listLen(inboxKey) == 0 && b.listLen(processingKey) == 0 &&
			len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) == 2 && len(b.tasksIn(t, tasks.QueueLow, asynq.TaskStatePending)) == 1 &&
			len(b.tasksIn(t, tasks.QueueDefault, asynq.TaskStateScheduled)) == 1
	})
	pending := keys.Default().WarmPending("user")
	if ids, err := b.r.Client.ZRange(context.Background(), pending, 0, -1).Result(); err != nil || len(ids) != 1 || ids[0] != "9" {
		t.Errorf("warm without options: pending ids %v (err %v) in %s, want [9]", ids, err, pending)
	}
	if n := len(b.tasksIn(t, tasks.QueueDefault, asynq.TaskStatePending)); n != 0 {
		t.Errorf("warm without options became %d pending job(s), want none (coalesced)", n)
	}
	mu.Lock()
	want := map[string]int{inbox.OutcomeEnqueued: 4, inbox.OutcomeDuplicate: 1, inbox.OutcomeCoalesced: 1}
	if !maps.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	mu.Unlock()
	crit := b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)
	for _, ti := range crit {
		if ti.Type != tasks.KindInvalidate || !strings.HasPrefix(ti.ID, "inbox:") {
			t.Errorf("task %s %s", ti.Type, ti.ID)
		}
		var a tasks.InvalidateArgs
		if err := json.Unmarshal(ti.Payload, &a); err != nil || a.Cache != "user" || a.IDs[0] != "1" {
			t.Errorf("payload %s (%v)", ti.Payload, err)
		}
	}
	if crit[0].ID == crit[1].ID {
		t.Error("identical entries got the same task id")
	}
	if low := b.tasksIn(t, tasks.QueueLow, asynq.TaskStatePending); low[0].ID != "warm-7" {
		t.Errorf("task id %q, want the producer's warm-7", low[0].ID)
	}
	if n := b.listLen(deadKey); n != 0 {
		t.Errorf("%d entries dead-lettered", n)
	}
}

func TestBridgeDeadLettersMalformedEntriesWithReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run(t, b.config())
	bad := map[string]string{
		`{"kind": "cache:invalidate", "args": {"cache": "user", "idz": [1]}}`: `"idz"`,
		`hello`:                              "not valid JSON",
		`{"kind": "cache:nuke", "args": {}}`: `unknown kind "cache:nuke"`,
	}
	for e := range bad {
		b.push(t, e)
	}
	b.push(t, invalidateUser1)
	waitFor(t, "entries handled", func() bool {
		return b.listLen(inboxKey) == 0 && b.listLen(processingKey) == 0 && b.listLen(deadKey) == 3
	})
	recs, err := b.r.Client.LRange(context.Background(), deadKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range recs {
		var dl inbox.DeadLetter
		if err := json.Unmarshal([]byte(s), &dl); err != nil {
			t.Fatalf("dead letter %q is not JSON: %v", s, err)
		}
		want, ok := bad[dl.Entry]
		if !ok || !strings.Contains(dl.Error, want) || dl.Time.IsZero() {
			t.Errorf("dead letter %+v: want the raw entry, an error containing %q and a time", dl, want)
		}
		delete(bad, dl.Entry)
	}
	if len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) != 1 {
		t.Error("the valid entry was not enqueued")
	}
}

func TestBridgeRecoversEntryLeftBetweenMoveAndEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The first bridge "dies" after moving and wrapping the entry, before
	// its enqueue reaches Redis.
	ctx, crash := context.WithCancel(context.Background())
	cfg := b.config()
	inbox.SetCrashHooks(&cfg, crash, nil)
	br, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.push(t, invalidateUser1)
	if err := br.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if b.listLen(inboxKey) != 0 || b.listLen(processingKey) != 1 || len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) != 0 {
		t.Fatalf("after the crash: inbox %d, processing %d, want the entry in processing and nothing enqueued", b.listLen(inboxKey), b.listLen(processingKey))
	}
	// Restart: the entry is recovered and runs once.
	run(t, b.config())
	waitFor(t, "recovered", func() bool {
		return b.listLen(processingKey) == 0 && len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) == 1
	})
}

func TestBridgeRecoversRawEntryInProcessingList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A bridge died right after BLMOVE: the raw entry sits in processing.
	b.r.Client.LPush(context.Background(), processingKey, invalidateUser1, "garbage")
	run(t, b.config())
	waitFor(t, "recovered", func() bool {
		return b.listLen(processingKey) == 0 && len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) == 1 && b.listLen(deadKey) == 1
	})
}

func TestBridgeCrashAfterEnqueueDoesNotDoubleTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, crash := context.WithCancel(context.Background())
	cfg := b.config()
	inbox.SetCrashHooks(&cfg, nil, crash) // dies after the enqueue, before removing the entry
	br, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.push(t, invalidateUser1)
	if err := br.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if b.listLen(processingKey) != 1 || len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)) != 1 {
		t.Fatalf("after the crash: processing %d, want 1 entry left and 1 task", b.listLen(processingKey))
	}
	run(t, b.config())
	waitFor(t, "recovered", func() bool { return b.listLen(processingKey) == 0 })
	if n := len(b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)); n != 1 {
		t.Fatalf("%d tasks after recovery, want still 1", n)
	}
}

func TestBridgeRecoversAbandonedEntriesWhileRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.RecoverAfter = time.Second
	run(t, cfg)
	// Another worker moved this entry long ago and died; this bridge is
	// already running, so only its periodic pass can find it.
	time.Sleep(50 * time.Millisecond)
	old := fmt.Sprintf(`{"cachekeeper_inbox_id":"deadbeef","moved_at":%q,"entry":%q}`, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano), invalidateUser1)
	b.r.Client.LPush(context.Background(), processingKey, old)
	waitFor(t, "recovered", func() bool {
		list := b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)
		return b.listLen(processingKey) == 0 && len(list) == 1 && list[0].ID == "inbox:deadbeef"
	})
}

func TestBridgeStopsAtOnceWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.BlockTimeout = 30 * time.Second
	stop := run(t, cfg)
	time.Sleep(50 * time.Millisecond) // let it block in BLMOVE
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stopping took %s with a 30s BLMOVE in flight", d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, mutate := range map[string]func(*inbox.Config){
		"no redis":    func(c *inbox.Config) { c.Redis = nil },
		"no enqueuer": func(c *inbox.Config) { c.Enqueuer = nil },
		"tiny block":  func(c *inbox.Config) { c.BlockTimeout = time.Millisecond },
	} {
		cfg := b.config()
		mutate(&cfg)
		if _, err := inbox.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestBridgeBatchesCrashMidBatch: entries move in batches and are enqueued
// concurrently; a bridge that dies in the middle of a batch leaves the
// entries it had not enqueued in the processing list, and a restarted bridge
// enqueues every entry exactly once.
func TestBridgeBatchesCrashMidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 300
	for i := 0; i < n; i++ {
		b.push(t, fmt.Sprintf(`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [%d]}, "options": {"max_retry": 3}}`, i))
	}
	ctx, crash := context.WithCancel(context.Background())
	var mu sync.Mutex
	calls := 0
	cfg := b.config()
	cfg.BatchSize, cfg.Enqueuers = 50, 4
	inbox.SetCrashHooks(&cfg, func() {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 120 {
			crash()
		}
	}, nil)
	br, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Run(ctx); err != nil {
		t.Fatal(err)
	}
	left := int64(inbox.EntriesIn(b.r.Client.LRange(context.Background(), processingKey, 0, -1).Val()))
	enqueued := b.pending(t)
	if left == 0 || int64(enqueued)+left+b.listLen(inboxKey) < n {
		t.Fatalf("after the crash: %d enqueued, %d in processing, %d in the inbox: entries lost", enqueued, left, b.listLen(inboxKey))
	}
	t.Logf("after the crash: %d enqueued, %d entries in processing, %d still in the inbox", enqueued, left, b.listLen(inboxKey))
	cfg = b.config()
	cfg.BatchSize = 50
	run(t, cfg)
	waitFor(t, "every entry enqueued", func() bool {
		return b.listLen(processingKey) == 0 && b.listLen(inboxKey) == 0 && b.pending(t) >= n
	})
	if got := b.pending(t); got != n {
		t.Fatalf("%d tasks, want %d: each entry once", got, n)
	}
}

func (b *bundle) pending(t *testing.T) int {
	t.Helper()
	qi, err := b.inspect.GetQueueInfo(tasks.QueueCritical)
	if err != nil {
		if strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "does not exist") {
			return 0 // nothing enqueued yet (a crash before the first pipeline)
		}
		t.Fatal(err)
	}
	return qi.Pending
}

// TestBridgeBatchCrashBeforeRemovalWithDeadLetter: a bridge dies after it
// enqueued every entry of a batch (one of them dead-lettered) and before the
// batch envelope left the processing list. The restarted bridge finds the
// jobs already enqueued under the same task ids (duplicates, none doubled),
// and the invalid entry stays on the dead-letter list with its reason.
func TestBridgeBatchCrashBeforeRemovalWithDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 5; i++ {
		b.push(t, fmt.Sprintf(`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [%d]}, "options": {"max_retry": 3}}`, i))
	}
	b.push(t, `{"kind": "cache:nuke", "args": {}}`)
	ctx, crash := context.WithCancel(context.Background())
	cfg := b.config()
	cfg.BatchSize = 10
	inbox.SetCrashHooks(&cfg, nil, crash)
	br, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Run(ctx); err != nil {
		t.Fatal(err)
	}
	left := b.r.Client.LRange(context.Background(), processingKey, 0, -1).Val()
	if len(left) != 1 || inbox.EntriesIn(left) != 6 || b.pending(t) != 5 || b.listLen(deadKey) != 1 {
		t.Fatalf("after the crash: %d elements holding %d entries in processing, %d pending, %d dead; want 1 batch of 6, 5, 1",
			len(left), inbox.EntriesIn(left), b.pending(t), b.listLen(deadKey))
	}
	cfg = b.config()
	var mu sync.Mutex
	outcomes := map[string]int{}
	cfg.OnOutcome = func(o string) { mu.Lock(); outcomes[o]++; mu.Unlock() }
	run(t, cfg)
	waitFor(t, "recovered", func() bool { return b.listLen(processingKey) == 0 })
	if n := b.pending(t); n != 5 {
		t.Fatalf("%d tasks after recovery, want still 5", n)
	}
	for _, ti := range b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending) {
		if !strings.HasPrefix(ti.ID, "inbox:") || !strings.Contains(ti.ID, "-") {
			t.Errorf("task id %q, want inbox:<batch id>-<index>", ti.ID)
		}
	}
	mu.Lock()
	if outcomes[inbox.OutcomeDuplicate] != 5 || outcomes[inbox.OutcomeRecovered] != 1 {
		t.Errorf("outcomes %v, want 5 duplicates of 1 recovered batch", outcomes)
	}
	mu.Unlock()
	recs := b.r.Client.LRange(context.Background(), deadKey, 0, -1).Val()
	if len(recs) < 1 || len(recs) > 2 {
		t.Fatalf("%d dead letters, want the invalid entry once (twice at most, after the crash)", len(recs))
	}
	for _, s := range recs {
		var dl inbox.DeadLetter
		if err := json.Unmarshal([]byte(s), &dl); err != nil || dl.Entry != `{"kind": "cache:nuke", "args": {}}` || !strings.Contains(dl.Error, "cache:nuke") {
			t.Errorf("dead letter %s (%v)", s, err)
		}
	}
}

// TestBridgeLeavesYoungBatchesOfOthers: a running bridge's periodic recovery
// does not take a batch envelope moved less than RecoverAfter ago (another
// bridge is enqueueing it), and takes it once it is older.
func TestBridgeLeavesYoungBatchesOfOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.config()
	cfg.RecoverAfter = time.Second
	run(t, cfg)
	time.Sleep(50 * time.Millisecond)
	young := fmt.Sprintf(`{"cachekeeper_inbox_batch":"b0","moved_at":%q,"entries":[%q]}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), invalidateUser1)
	old := fmt.Sprintf(`{"cachekeeper_inbox_batch":"b1","moved_at":%q,"entries":[%q,%q]}`, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano), invalidateUser1, invalidateUser1)
	b.r.Client.LPush(context.Background(), processingKey, young, old)
	waitFor(t, "the old batch recovered", func() bool {
		list := b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending)
		return b.listLen(processingKey) == 1 && len(list) == 2
	})
	ids := map[string]bool{}
	for _, ti := range b.tasksIn(t, tasks.QueueCritical, asynq.TaskStatePending) {
		ids[ti.ID] = true
	}
	if !ids["inbox:b1-0"] || !ids["inbox:b1-1"] {
		t.Errorf("task ids %v, want inbox:b1-0 and inbox:b1-1", ids)
	}
	time.Sleep(1500 * time.Millisecond) // more than one periodic pass
	if got := b.r.Client.LRange(context.Background(), processingKey, 0, -1).Val(); len(got) != 1 || got[0] != young {
		t.Fatalf("processing %v, want the young batch untouched", got)
	}
}

// An entry taken by the idle path whose enqueue fails once (Redis out of
// memory for a moment, a real refusal) is retried from the state it is in,
// its envelope, and enqueued within the backoff, not left for recovery.
func TestBridgeRetriesAFailedEnqueueFromItsEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cfg := b.config()
	cfg.RecoverAfter = time.Hour // recovery must not be what saves it
	var once sync.Once
	inject := func() {
		once.Do(func() {
			if err := b.r.Client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
				t.Error(err)
			}
			time.AfterFunc(30*time.Millisecond, func() { b.r.Client.ConfigSet(ctx, "maxmemory", "0") })
		})
	}
	inbox.SetCrashHooks(&cfg, inject, nil)
	run(t, cfg)
	time.Sleep(200 * time.Millisecond) // the bridge waits on the idle path
	pushed := time.Now()
	b.push(t, invalidateUser1)
	waitFor(t, "entry enqueued after its failed first try", func() bool { return len(b.tasksIn(t, "critical", asynq.TaskStatePending)) == 1 })
	t.Logf("enqueued %.0fms after the push (first enqueue refused: out of memory)", float64(time.Since(pushed).Microseconds())/1000)
	if time.Since(pushed) > 2*time.Second {
		t.Errorf("took %s; want the backoff's retry, not recovery", time.Since(pushed))
	}
	waitFor(t, "processing list empty", func() bool { return b.listLen(processingKey) == 0 })
}
