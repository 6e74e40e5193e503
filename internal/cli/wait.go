package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
)

// resultWatcher is told about every new result a running task writes (for
// example warm_all's progress); it returns a function to call when done.
// Set per kind by the kinds that report progress.
var resultWatchers = map[string]func(io IO) (onResult func(result []byte), done func()){}

// waitForTask polls the task until it completes (exit 0) or is archived
// (exit 1), printing progress results as they change.
func waitForTask(ctx context.Context, io IO, insp *asynq.Inspector, info *asynq.TaskInfo, timeout time.Duration, format string) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	onResult, done := func([]byte) {}, func() {}
	if w, ok := resultWatchers[info.Type]; ok {
		onResult, done = w(io)
	}
	// finish ends the progress display once, before the final line.
	var once sync.Once
	finish := func() { once.Do(done) }
	defer finish()
	var lastResult []byte
	lastRetried := 0
	var pauseChecked time.Time // when the queue was last asked whether it is paused
	paused := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// A failed read (Redis restarting, a cluster failover) is retried with
	// backoff for as long as the wait lasts: the job goes on meanwhile.
	var failing error
	backoff := 100 * time.Millisecond
	for {
		cur, err := insp.GetTaskInfo(info.Queue, info.ID)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound):
			return fmt.Errorf("task %s vanished from queue %s before it finished (deleted by hand?)", info.ID, info.Queue)
		case err != nil:
			if failing == nil {
				fmt.Fprintf(io.Stderr, "cannot read task %s (%v); retrying while waiting\n", info.ID, err)
			}
			failing = err
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("task %s: --wait-timeout %s passed while Redis did not answer: %v", info.ID, timeout, failing)
				}
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if failing != nil {
			fmt.Fprintf(io.Stderr, "reading task %s again\n", info.ID)
			failing, backoff = nil, 100*time.Millisecond
		}
		if len(cur.Result) > 0 && !bytes.Equal(cur.Result, lastResult) {
			lastResult = append(lastResult[:0], cur.Result...)
			onResult(cur.Result)
		}
		if cur.Retried > lastRetried {
			lastRetried = cur.Retried
			fmt.Fprintf(io.Stderr, "attempt %d failed: %s (will retry, %d of %d)\n", cur.Retried, cur.LastErr, cur.Retried, cur.MaxRetry)
		}
		switch cur.State {
		case asynq.TaskStateCompleted:
			finish()
			if err := printTaskInfo(io, format, "finished", cur); err != nil {
				return err
			}
			return invalidIDs(cur)
		case asynq.TaskStateArchived:
			finish()
			_ = printTaskInfo(io, format, "archived", cur)
			return fmt.Errorf("task %s failed and was archived after %d retries: %s", cur.ID, cur.Retried, cur.LastErr)
		}
		if cur.State == asynq.TaskStatePending && time.Since(pauseChecked) >= time.Second {
			pauseChecked = time.Now()
			if q, err := insp.GetQueueInfo(cur.Queue); err == nil && q.Paused != paused {
				paused = q.Paused
				if paused {
					fmt.Fprintf(io.Stderr, "queue %s is paused: the task waits until 'cachekeeper queues resume %s'\n", cur.Queue, cur.Queue)
				} else {
					fmt.Fprintf(io.Stderr, "queue %s was resumed\n", cur.Queue)
				}
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if paused && cur.State == asynq.TaskStatePending {
					return fmt.Errorf("task %s still pending after --wait-timeout %s: queue %s is paused (cachekeeper queues resume %s)", cur.ID, timeout, cur.Queue, cur.Queue)
				}
				return fmt.Errorf("task %s still %s after --wait-timeout %s (is a worker running?)", cur.ID, cur.State, timeout)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// invalidIDs fails a finished job whose result reports ids it could not use
// (a warm of "abc" in a cache whose ids are integers): the job did its best,
// but what was asked for did not happen.
func invalidIDs(info *asynq.TaskInfo) error {
	var r struct {
		Invalid    int      `json:"invalid"`
		InvalidIDs []string `json:"invalid_ids"`
	}
	if len(info.Result) == 0 || json.Unmarshal(info.Result, &r) != nil || r.Invalid == 0 {
		return nil
	}
	ids := ""
	if len(r.InvalidIDs) > 0 {
		ids = " (" + strings.Join(r.InvalidIDs, ", ") + ")"
	}
	return fmt.Errorf("task %s finished, but %d id(s)%s are not valid values of the cache's id column: nothing was warmed for them", info.ID, r.Invalid, ids)
}
