package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	ucli "github.com/urfave/cli/v2"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

func taskCancelCommand(io IO, queueFlag ucli.Flag) *ucli.Command {
	return &ucli.Command{
		Name:      "cancel",
		ArgsUsage: "ID",
		Usage:     "stop a running task: its handler's context ends and the task is archived with the reason \"cancelled\", never retried",
		Description: "The worker running the task ends its context; the task is archived (not deleted: its record and\n" +
			"reason stay, and 'cachekeeper task run ID' runs it again; a whole-table warm resumes from its\n" +
			"checkpoint). The command waits until the task has left the active state and says where it went.\n" +
			"A pending, scheduled or retrying task is not running: archive or delete it instead.",
		Flags: append([]ucli.Flag{queueFlag, outputFlag(),
			&ucli.DurationFlag{Name: "wait-timeout", Value: 10 * time.Second, Usage: "how long to wait for the task to stop"},
		}, connFlags()...),
		Action: func(c *ucli.Context) error { return cancelTask(c, io) },
	}
}

func cancelTask(c *ucli.Context, io IO) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	timeout := c.Duration("wait-timeout")
	if timeout <= 0 {
		return usagef("--wait-timeout must be positive, got %s", timeout)
	}
	id, svc, err := argAndServices(c, io, "task id")
	if err != nil {
		return err
	}
	defer svc.Close()
	insp := svc.inspector()
	info, err := findTask(insp, c.String("queue"), id)
	if err != nil {
		return err
	}
	if info.State != asynq.TaskStateActive {
		return usagef("task %s is %s, not active: only a running task can be cancelled (use 'task delete' or 'task archive')", id, info.State)
	}
	k, err := keys.New(svc.cfg.KeyPrefix)
	if err != nil {
		return usagef("%v", err)
	}
	// The id is sent again every second while the task is still active: a
	// worker whose subscription was being re-established gets it too.
	var listeners int64
	deadline := time.Now().Add(timeout)
	var lastSent time.Time
	cur := info
	for cur.State == asynq.TaskStateActive {
		if time.Since(lastSent) >= time.Second {
			n, err := svc.redis.Publish(c.Context, k.CancelChannel(), info.ID).Result()
			if err != nil {
				return fmt.Errorf("send the cancellation of task %s: %w", info.ID, err)
			}
			listeners = max(listeners, n)
			lastSent = time.Now()
		}
		if time.Now().After(deadline) {
			if listeners == 0 {
				return fmt.Errorf("task %s is still active after %s: no cachekeeper worker listens on %s (is the worker older than this command?)", info.ID, timeout, k.CancelChannel())
			}
			return fmt.Errorf("task %s is still active %s after its cancellation: its handler does not watch its context; it will be archived as cancelled when it returns an error", info.ID, timeout)
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(50 * time.Millisecond):
		}
		next, err := insp.GetTaskInfo(info.Queue, info.ID)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			cur = nil
			break
		}
		if err != nil {
			return fmt.Errorf("task %s: %w", info.ID, err)
		}
		cur = next
	}
	state, outcome := "deleted", "finished before the cancellation reached it (no record kept)"
	if cur != nil {
		state = cur.State.String()
		switch {
		case cur.State == asynq.TaskStateArchived && strings.HasPrefix(cur.LastErr, "cancelled"):
			outcome = "cancelled: archived with reason \"cancelled\", not retried ('cachekeeper task run " + info.ID + "' runs it again)"
		case cur.State == asynq.TaskStateCompleted:
			outcome = "finished before the cancellation reached it"
		default:
			outcome = fmt.Sprintf("left the active state as %s: %s", cur.State, cur.LastErr)
		}
	}
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(map[string]any{"id": info.ID, "kind": info.Type, "queue": info.Queue,
			"was": "active", "action": "cancel", "state": state, "cancelled": strings.HasPrefix(outcome, "cancelled")})
	}
	fmt.Fprintf(io.Stdout, "task %s (%s) on queue %s: %s\n", info.ID, info.Type, info.Queue, outcome)
	return nil
}
