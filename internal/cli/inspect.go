package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"

	"github.com/cachekeeper/cachekeeper/internal/asynqx"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/hibiken/asynq"
	ucli "github.com/urfave/cli/v2"
)

func queuesCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:        "queues",
		Usage:       "list queues (the default), pause or resume one",
		Subcommands: []*ucli.Command{queuesListCommand(io), queuePauseCommand(io, true), queuePauseCommand(io, false)},
	}
}

func queuesListCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "list",
		Usage: "show every queue (each of worker.queues from the start, zero counts before any job, and any other a job used) with its task counts by state, and the coalesced warm ids pending per cache",
		Description: "With -o json, one object per line: {\"cache\": ..., \"pending_warm_ids\": N, \"configured\": bool, \"served\": bool}\n" +
			"for each cache (served: a running worker takes its ids), then {\"queue\": ..., \"pending\": N, ...} for each queue.",
		Flags: append([]ucli.Flag{outputFlag()}, connFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			svc, err := connectFromFlags(c, io)
			if err != nil {
				return err
			}
			defer svc.Close()
			insp := svc.inspector()
			infos, err := queueInfos(c.Context, svc, insp)
			if err != nil {
				return err
			}
			pending, err := pendingWarms(c.Context, svc)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(io.Stdout)
				for _, p := range pending {
					if err := enc.Encode(map[string]any{"cache": p.cache, "pending_warm_ids": p.ids, "configured": p.configured, "served": p.served}); err != nil {
						return err
					}
				}
				for _, i := range infos {
					if err := enc.Encode(map[string]any{"queue": i.Queue, "paused": i.Paused, "size": i.Size,
						"pending": i.Pending, "active": i.Active, "scheduled": i.Scheduled, "retry": i.Retry,
						"archived": i.Archived, "completed": i.Completed, "aggregating": i.Aggregating,
						"processed_today": i.Processed, "failed_today": i.Failed, "latency_ms": i.Latency.Milliseconds()}); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "QUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tCOMPLETED\tAGGREGATING\tPROCESSED TODAY\tFAILED TODAY\tLATENCY")
			for _, i := range infos {
				q := i.Queue
				if i.Paused {
					q += " (paused)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", q, i.Pending, i.Active, i.Scheduled, i.Retry,
					i.Archived, i.Completed, i.Aggregating, i.Processed, i.Failed, i.Latency.Round(1e6))
			}
			if err := tw.Flush(); err != nil || len(pending) == 0 {
				return err
			}
			tw = tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\nCACHE\tPENDING WARM IDS (WarmCache, not yet a job)\t")
			for _, p := range pending {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", p.cache, p.ids, p.note())
			}
			return tw.Flush()
		},
	}
}

// queueInfos reports on every configured queue and every queue asynq
// knows, sorted by name. A configured queue no job has used yet (asynq does
// not know it) is listed with zero counts, paused or not.
func queueInfos(ctx context.Context, svc *services, insp *asynq.Inspector) ([]*asynq.QueueInfo, error) {
	registered, err := asynqx.Registered(ctx, svc.redis)
	if err != nil {
		return nil, err
	}
	names, err := knownQueues(ctx, svc)
	if err != nil {
		return nil, err
	}
	infos := make([]*asynq.QueueInfo, 0, len(names))
	for _, q := range names {
		if !slices.Contains(registered, q) {
			paused, err := asynqx.Paused(ctx, svc.redis, q)
			if err != nil {
				return nil, err
			}
			infos = append(infos, &asynq.QueueInfo{Queue: q, Paused: paused})
			continue
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		infos = append(infos, info)
	}
	return infos, nil
}

type cachePending struct {
	cache      string
	ids        int64
	configured bool // in this command's configuration
	served     bool // a running worker marked it served in the last minutes
}

func (p cachePending) note() string {
	switch {
	case p.served:
		return ""
	case p.configured:
		return "no running worker serves it"
	}
	return "no running worker serves it, and it is not in this configuration: misspelt in WarmCache?"
}

// pendingWarms counts the ids WarmCache left that no worker has turned into
// a job yet, for each configured cache and each cache name WarmCache was
// called with (a name not configured is likely misspelt: no worker takes it).
func pendingWarms(ctx context.Context, svc *services) ([]cachePending, error) {
	k, err := keys.New(svc.cfg.KeyPrefix)
	if err != nil {
		return nil, usagef("%v", err)
	}
	used, err := svc.redis.SMembers(ctx, k.WarmCaches()).Result()
	if err != nil {
		return nil, fmt.Errorf("read the cache names WarmCache used: %w", err)
	}
	names := append([]string(nil), used...)
	for name := range svc.cfg.Caches {
		if !slices.Contains(used, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	out := make([]cachePending, 0, len(names))
	for _, name := range names {
		n, err := svc.redis.ZCard(ctx, k.WarmPending(name)).Result()
		if err != nil {
			return nil, fmt.Errorf("pending warms of %s: %w", name, err)
		}
		served, err := svc.redis.Exists(ctx, k.WarmServed(name)).Result()
		if err != nil {
			return nil, fmt.Errorf("workers of %s: %w", name, err)
		}
		_, configured := svc.cfg.Caches[name]
		out = append(out, cachePending{cache: name, ids: n, configured: configured, served: served > 0})
	}
	return out, nil
}

var taskStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

func taskCommand(io IO) *ucli.Command {
	queueFlag := &ucli.StringFlag{Name: "queue", Usage: "queue of the task (default: look in every queue)"}
	return &ucli.Command{
		Name:  "task",
		Usage: "inspect and control tasks: show, list, run again, delete, archive, cancel",
		Subcommands: []*ucli.Command{
			{
				Name: "show", Usage: "show one task by id", ArgsUsage: "ID",
				Flags: append([]ucli.Flag{queueFlag, outputFlag()}, connFlags()...),
				Action: func(c *ucli.Context) error {
					format, err := outputFormat(c)
					if err != nil {
						return err
					}
					id, svc, err := argAndServices(c, io, "task id")
					if err != nil {
						return err
					}
					defer svc.Close()
					info, err := findTask(svc.inspector(), c.String("queue"), id)
					if err != nil {
						return err
					}
					if format == "json" {
						return json.NewEncoder(io.Stdout).Encode(toTaskJSON(info))
					}
					t := toTaskJSON(info)
					tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintf(tw, "id\t%s\nkind\t%s\nqueue\t%s\nstate\t%s\nretried\t%d of %d\n", t.ID, t.Kind, t.Queue, t.State, t.Retried, t.MaxRetry)
					for _, row := range []struct {
						name string
						at   *time.Time
					}{{"enqueued", t.EnqueuedAt}, {"started", t.StartedAt}, {"completed", t.CompletedAt}, {"last failed", t.LastFailedAt}, {"next run", t.NextProcessAt}} {
						if row.at != nil {
							fmt.Fprintf(tw, "%s\t%s\n", row.name, row.at.Format(time.RFC3339))
						}
					}
					if t.LastError != "" {
						fmt.Fprintf(tw, "last error\t%s\n", t.LastError)
					}
					fmt.Fprintf(tw, "payload\t%s\n", info.Payload)
					if len(t.Result) > 0 {
						fmt.Fprintf(tw, "result\t%s\n", t.Result)
					}
					return tw.Flush()
				},
			},
			{
				Name: "list", Usage: "list tasks of a queue in one state",
				Flags: append([]ucli.Flag{
					&ucli.StringFlag{Name: "queue", Value: "default", Usage: "queue name"},
					&ucli.StringFlag{Name: "state", Value: "pending", Usage: strings.Join(taskStates, ", ")},
					&ucli.IntFlag{Name: "limit", Value: 20, Usage: "at most this many tasks"},
					outputFlag()}, connFlags()...),
				Action: func(c *ucli.Context) error {
					format, err := outputFormat(c)
					if err != nil {
						return err
					}
					if c.Int("limit") < 1 {
						return usagef("--limit must be at least 1")
					}
					svc, err := connectFromFlags(c, io)
					if err != nil {
						return err
					}
					defer svc.Close()
					tasks, err := listTasks(svc.inspector(), c.String("queue"), c.String("state"), c.Int("limit"))
					if err != nil {
						return err
					}
					if format == "json" {
						enc := json.NewEncoder(io.Stdout)
						for _, t := range tasks {
							if err := enc.Encode(toTaskJSON(t)); err != nil {
								return err
							}
						}
						return nil
					}
					// Say what is listed: with no flags, "pending tasks of queue
					// default" is a choice the user did not make.
					shown := fmt.Sprintf("%d %s task(s) of queue %s", len(tasks), c.String("state"), c.String("queue"))
					if !c.IsSet("queue") || !c.IsSet("state") {
						shown += " (choose with --queue and --state: " + strings.Join(taskStates, ", ") + ")"
					}
					if len(tasks) == c.Int("limit") {
						shown += fmt.Sprintf(", the first %d (--limit)", c.Int("limit"))
					}
					fmt.Fprintln(io.Stdout, shown)
					tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tKIND\tSTATE\tRETRIED\tLAST ERROR")
					for _, t := range tasks {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", t.ID, t.Type, t.State, t.Retried, t.MaxRetry, oneLine(t.LastErr))
					}
					return tw.Flush()
				},
			},
			taskRunCommand(io, queueFlag),
			taskChangeCommand(io, queueFlag, "delete"),
			taskChangeCommand(io, queueFlag, "archive"),
			taskCancelCommand(io, queueFlag),
		},
	}
}

// taskTimes returns what is known of when a task was enqueued (the header
// tasks.NewTask sets), started, completed and last failed; nil where
// unknown. asynq records no start time: started is set for a completed
// task from its result's "started_at" when the handler wrote one.
func taskTimes(info *asynq.TaskInfo) (enqueued, started, completed, failed *time.Time) {
	at := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	if v, ok := info.Headers[tasks.HeaderEnqueuedAt]; ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			enqueued = at(t)
		}
	}
	var r struct {
		StartedAt time.Time `json:"started_at"`
	}
	if len(info.Result) > 0 && json.Unmarshal(info.Result, &r) == nil {
		started = at(r.StartedAt)
	}
	return enqueued, started, at(info.CompletedAt), at(info.LastFailedAt)
}

// oneArg returns the command's one positional argument. normalizeArgs has
// already refused flags the command does not take and moved the others in
// front, so every positional here is an argument.
func oneArg(c *ucli.Context, what string) (string, error) {
	if c.NArg() != 1 || strings.TrimSpace(c.Args().First()) == "" {
		return "", usagef("give exactly one %s (see '%s --help')", what, c.Command.HelpName)
	}
	return c.Args().First(), nil
}

// argAndServices reads the command's one argument, then connects: the start
// of every command that acts on one queue or task. The caller closes svc.
func argAndServices(c *ucli.Context, io IO, what string) (string, *services, error) {
	arg, err := oneArg(c, what)
	if err != nil {
		return "", nil, err
	}
	svc, err := connectFromFlags(c, io)
	if err != nil {
		return "", nil, err
	}
	return arg, svc, nil
}

func connectFromFlags(c *ucli.Context, io IO) (*services, error) {
	cfg, err := loadConfig(c, io)
	if err != nil {
		return nil, err
	}
	return connect(c.Context, cfg, false)
}

// findTask looks the task up in queue, or in every queue when queue is "".
func findTask(insp *asynq.Inspector, queue, id string) (*asynq.TaskInfo, error) {
	queues := []string{queue}
	if queue == "" {
		var err error
		if queues, err = insp.Queues(); err != nil {
			return nil, fmt.Errorf("list queues: %w", err)
		}
	}
	var found []*asynq.TaskInfo
	for _, q := range queues {
		info, err := insp.GetTaskInfo(q, id)
		if err == nil {
			found = append(found, info)
			continue
		}
		if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			return nil, fmt.Errorf("read task %s: %w", id, err)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
	default:
		var in []string
		for _, f := range found {
			in = append(in, f.Queue)
		}
		sort.Strings(in)
		return nil, usagef("task id %q is in several queues (%s): give --queue", id, strings.Join(in, ", "))
	}
	where := "any queue"
	if queue != "" {
		where = "queue " + queue
	}
	return nil, notFoundf("no task %q in %s (finished tasks are kept only with a retention)", id, where)
}

func listTasks(insp *asynq.Inspector, queue, state string, limit int) ([]*asynq.TaskInfo, error) {
	opts := []asynq.ListOption{asynq.PageSize(limit)}
	var tasks []*asynq.TaskInfo
	var err error
	switch state {
	case "pending":
		tasks, err = insp.ListPendingTasks(queue, opts...)
	case "active":
		tasks, err = insp.ListActiveTasks(queue, opts...)
	case "scheduled":
		tasks, err = insp.ListScheduledTasks(queue, opts...)
	case "retry":
		tasks, err = insp.ListRetryTasks(queue, opts...)
	case "archived":
		tasks, err = insp.ListArchivedTasks(queue, opts...)
	case "completed":
		tasks, err = insp.ListCompletedTasks(queue, opts...)
	default:
		return nil, usagef("--state %q must be one of %s", state, strings.Join(taskStates, ", "))
	}
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil, notFoundf("queue %q does not exist (see 'cachekeeper queues')", queue)
	}
	return tasks, err
}
