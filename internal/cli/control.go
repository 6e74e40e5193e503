package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/cachekeeper/cachekeeper/internal/asynqx"
	ucli "github.com/urfave/cli/v2"
)

// The control commands mirror asynq's vocabulary (its CLI and Inspector):
// queues pause/resume; task run/delete/archive/cancel, one by id or all of a
// queue in one state.

func queuePauseCommand(io IO, pause bool) *ucli.Command {
	name, verb, done := "pause", "pause a queue (a configured one also before its first job): workers take no task from it until it is resumed", "paused"
	if !pause {
		name, verb, done = "resume", "resume a paused queue", "resumed"
	}
	return &ucli.Command{
		Name: name, Usage: verb, ArgsUsage: "QUEUE",
		Flags: append([]ucli.Flag{outputFlag()}, connFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			q, svc, err := argAndServices(c, io, "queue name")
			if err != nil {
				return err
			}
			defer svc.Close()
			insp := svc.inspector()
			if err := requireQueue(c.Context, svc, q); err != nil {
				return err
			}
			if pause {
				err = insp.PauseQueue(q)
			} else {
				err = insp.UnpauseQueue(q)
			}
			if err != nil {
				// asynq refuses pausing a paused queue and resuming a running one.
				return usagef("queue %s: %v", q, err)
			}
			if format == "json" {
				return json.NewEncoder(io.Stdout).Encode(map[string]any{"queue": q, "paused": pause})
			}
			fmt.Fprintf(io.Stdout, "queue %s %s\n", q, done)
			return nil
		},
	}
}

// requireQueue refuses a queue that is neither configured (worker.queues)
// nor known to asynq (used by a job), naming those that are. A configured
// queue no job has used yet is registered with asynq here, so that it can
// be paused, resumed and inspected ahead of its first job.
func requireQueue(ctx context.Context, svc *services, q string) error {
	names, err := knownQueues(ctx, svc)
	if err != nil {
		return err
	}
	if !slices.Contains(names, q) {
		slices.Sort(names)
		return notFoundf("queue %q does not exist (queues: %s)", q, strings.Join(names, ", "))
	}
	if slices.Contains(svc.cfg.QueueNames(), q) {
		return asynqx.RegisterQueues(ctx, svc.redis, q)
	}
	return nil
}

// knownQueues returns the configured queues and those asynq knows, sorted.
func knownQueues(ctx context.Context, svc *services) ([]string, error) {
	names, err := asynqx.Registered(ctx, svc.redis)
	if err != nil {
		return nil, err
	}
	for _, q := range svc.cfg.QueueNames() {
		if !slices.Contains(names, q) {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	return names, nil
}

// bulkStates are the states `task run --all` and `task delete --all` take.
var (
	runAllStates    = []string{"archived", "retry", "scheduled"}
	deleteAllStates = []string{"archived", "retry", "scheduled", "pending", "completed"}
)

func allFlags(states []string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "all", Usage: "every task of --queue in --state, instead of one ID"},
		&ucli.StringFlag{Name: "state", Usage: "with --all: " + strings.Join(states, ", ")},
	}
}

func taskRunCommand(io IO, queueFlag ucli.Flag) *ucli.Command {
	return &ucli.Command{
		Name: "run", Usage: "run an archived, retrying or scheduled task now (or --all of a queue in one state)", ArgsUsage: "ID",
		Flags: append(append([]ucli.Flag{queueFlag, outputFlag()}, allFlags(runAllStates)...), connFlags()...),
		Action: func(c *ucli.Context) error {
			return taskAction(c, io, "run")
		},
	}
}

func taskChangeCommand(io IO, queueFlag ucli.Flag, op string) *ucli.Command {
	cmd := &ucli.Command{Name: op, ArgsUsage: "ID", Flags: []ucli.Flag{queueFlag, outputFlag()}}
	switch op {
	case "delete":
		cmd.Usage = "delete a task that is not running (or --all of a queue in one state, with --yes)"
		cmd.Flags = append(cmd.Flags, allFlags(deleteAllStates)...)
		cmd.Flags = append(cmd.Flags, &ucli.BoolFlag{Name: "yes", Usage: "confirm deleting with --all"})
	case "archive":
		cmd.Usage = "archive a pending, scheduled or retrying task: it will not run unless run again"
	}
	cmd.Flags = append(cmd.Flags, connFlags()...)
	cmd.Action = func(c *ucli.Context) error { return taskAction(c, io, op) }
	return cmd
}

func taskAction(c *ucli.Context, io IO, op string) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	if c.Bool("all") {
		return bulkTaskAction(c, io, op, format)
	}
	if c.IsSet("state") {
		return usagef("--state goes with --all")
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
	var done string
	switch op {
	case "run":
		err, done = insp.RunTask(info.Queue, info.ID), "moved to pending"
	case "delete":
		err, done = insp.DeleteTask(info.Queue, info.ID), "deleted"
	case "archive":
		err, done = insp.ArchiveTask(info.Queue, info.ID), "archived"
	}
	if err != nil {
		return usagef("task %s is %s and cannot be %s: %v", id, info.State, pastTense(op), err)
	}
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(map[string]any{"id": info.ID, "kind": info.Type, "queue": info.Queue, "was": info.State.String(), "action": op})
	}
	fmt.Fprintf(io.Stdout, "task %s (%s) on queue %s: %s\n", info.ID, info.Type, info.Queue, done)
	return nil
}

func pastTense(op string) string {
	switch op {
	case "run":
		return "run now"
	}
	return op + "d"
}

func bulkTaskAction(c *ucli.Context, io IO, op, format string) error {
	if c.NArg() > 0 {
		return usagef("--all takes no task id, got %q", c.Args().First())
	}
	q, state := c.String("queue"), c.String("state")
	states := runAllStates
	if op == "delete" {
		states = deleteAllStates
	}
	if q == "" {
		return usagef("--all needs --queue")
	}
	if !slices.Contains(states, state) {
		return usagef("--all needs --state, one of %s", strings.Join(states, ", "))
	}
	svc, err := connectFromFlags(c, io)
	if err != nil {
		return err
	}
	defer svc.Close()
	insp := svc.inspector()
	if err := requireQueue(c.Context, svc, q); err != nil {
		return err
	}
	if op == "delete" && !c.Bool("yes") {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		n := map[string]int{"archived": info.Archived, "retry": info.Retry, "scheduled": info.Scheduled, "pending": info.Pending, "completed": info.Completed}[state]
		return usagef("this would delete %d %s tasks of queue %s: add --yes to do it", n, state, q)
	}
	var n int
	switch op + " " + state {
	case "run archived":
		n, err = insp.RunAllArchivedTasks(q)
	case "run retry":
		n, err = insp.RunAllRetryTasks(q)
	case "run scheduled":
		n, err = insp.RunAllScheduledTasks(q)
	case "delete archived":
		n, err = insp.DeleteAllArchivedTasks(q)
	case "delete retry":
		n, err = insp.DeleteAllRetryTasks(q)
	case "delete scheduled":
		n, err = insp.DeleteAllScheduledTasks(q)
	case "delete pending":
		n, err = insp.DeleteAllPendingTasks(q)
	case "delete completed":
		n, err = insp.DeleteAllCompletedTasks(q)
	}
	if err != nil {
		return fmt.Errorf("%s every %s task of %s: %w", op, state, q, err)
	}
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(map[string]any{"queue": q, "state": state, "action": op, "count": n})
	}
	verb := "moved to pending"
	if op == "delete" {
		verb = "deleted"
	}
	fmt.Fprintf(io.Stdout, "%d %s tasks of queue %s %s\n", n, state, q, verb)
	return nil
}
