package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	ucli "github.com/urfave/cli/v2"
)

// enqueueKind describes one `cachekeeper enqueue <name>` subcommand.
type enqueueKind struct {
	name  string
	kind  string
	usage string
	flags []ucli.Flag
	// args builds the payload from the flags.
	args func(c *ucli.Context) (tasks.Payload, error)
}

func enqueueKinds() []enqueueKind {
	cacheFlag := &ucli.StringFlag{Name: "cache", Usage: "cache name from the config (e.g. user)"}
	idFlag := &ucli.StringSliceFlag{Name: "id", Usage: "row id (repeat for several: --id 1 --id 2)"}
	rate := &ucli.IntFlag{Name: "max-keys-per-second", Usage: "cap on keys touched per second (0: no cap)"}
	return []enqueueKind{
		{name: "warm", kind: tasks.KindWarm, usage: "refresh cached rows from the database by id",
			flags: []ucli.Flag{cacheFlag, idFlag},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.WarmArgs{Cache: c.String("cache"), IDs: c.StringSlice("id")}, nil
			}},
		{name: "warm-all", kind: tasks.KindWarmAll, usage: "stream a whole table into a cache (resumes from its checkpoint)",
			flags: []ucli.Flag{cacheFlag, rate, &ucli.BoolFlag{Name: "restart", Usage: "ignore the saved checkpoint and start from the first row"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.WarmAllArgs{Cache: c.String("cache"), MaxKeysPerSecond: c.Int("max-keys-per-second"), Restart: c.Bool("restart")}, nil
			}},
		{name: "invalidate", kind: tasks.KindInvalidate, usage: "delete cached rows (by --cache and --id, or by --key), fenced against in-flight warms",
			flags: []ucli.Flag{cacheFlag, idFlag,
				&ucli.StringSliceFlag{Name: "key", Usage: "literal key to delete (repeatable)"},
				&ucli.BoolFlag{Name: "rewarm", Usage: "warm the same ids again afterwards"},
				&ucli.BoolFlag{Name: "coalesce", Usage: "add the ids to the cache's pending invalidations instead of a job of their own: " +
					"a worker deletes them with others in fenced batches within invalidate.coalesce_window (no task id; not with --key, --rewarm or the job flags)"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.InvalidateArgs{Cache: c.String("cache"), IDs: c.StringSlice("id"), Keys: c.StringSlice("key"), Rewarm: c.Bool("rewarm")}, nil
			}},
		{name: "invalidate-pattern", kind: tasks.KindInvalidatePattern, usage: "delete every key matching a glob pattern (SCAN + UNLINK, never KEYS)",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "pattern", Usage: "glob pattern, e.g. 'user:*'"}, rate,
				&ucli.BoolFlag{Name: "yes", Usage: "confirm a pattern that matches every key"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				p := &tasks.InvalidatePatternArgs{Pattern: c.String("pattern"), AllowAll: c.Bool("yes"), MaxKeysPerSecond: c.Int("max-keys-per-second")}
				if p.Pattern != "" && tasks.MatchesEverything(p.Pattern) && !p.AllowAll {
					return nil, usagef("--pattern %q matches every key; add --yes if you really mean to delete them all", p.Pattern)
				}
				return p, nil
			}},
		{name: "invalidate-tag", kind: tasks.KindInvalidateTag, usage: "delete every cached key carrying a tag",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "tag", Usage: "tag, e.g. org:7"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.InvalidateTagArgs{Tag: c.String("tag")}, nil
			}},
		{name: "session-cleanup", kind: tasks.KindSessionCleanup, usage: "delete expired, idle and orphaned sessions; give TTLs to immortal ones",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "pattern", Usage: "session key pattern (default from config)"},
				&ucli.DurationFlag{Name: "max-age", Usage: "delete sessions created longer ago (default from config)"},
				&ucli.DurationFlag{Name: "idle-timeout", Usage: "delete sessions idle longer (default from config)"}, rate,
				&ucli.BoolFlag{Name: "dry-run", Usage: "count what would change, change nothing"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.SessionCleanupArgs{Pattern: c.String("pattern"), MaxAge: tasks.Duration(c.Duration("max-age")),
					IdleTimeout: tasks.Duration(c.Duration("idle-timeout")), MaxKeysPerSecond: c.Int("max-keys-per-second"), DryRun: c.Bool("dry-run")}, nil
			}},
		{name: "session-revoke", kind: tasks.KindSessionRevoke, usage: "delete every session of a user",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "user-id", Usage: "the user's id"},
				&ucli.BoolFlag{Name: "scan", Usage: "also scan every session for the user (when index sets may be incomplete)"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.SessionRevokeArgs{UserID: c.String("user-id"), Scan: c.Bool("scan")}, nil
			}},
		{name: "ratelimit-prune", kind: tasks.KindRateLimitPrune, usage: "remove old entries of sliding-window rate-limit sets",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "pattern", Usage: "rate-limit key pattern (default from config)"},
				&ucli.DurationFlag{Name: "window", Usage: "sliding window (default from config)"}, rate},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.RateLimitPruneArgs{Pattern: c.String("pattern"), Window: tasks.Duration(c.Duration("window")), MaxKeysPerSecond: c.Int("max-keys-per-second")}, nil
			}},
		{name: "notify", kind: tasks.KindNotifyPublish, usage: "publish a message on a pub/sub channel, now or later (--in, --at)",
			flags: []ucli.Flag{&ucli.StringFlag{Name: "channel", Usage: "pub/sub channel"}, &ucli.StringFlag{Name: "message", Usage: "message text"}},
			args: func(c *ucli.Context) (tasks.Payload, error) {
				return &tasks.NotifyArgs{Channel: c.String("channel"), Message: c.String("message")}, nil
			}},
	}
}

func enqueueFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.DurationFlag{Name: "in", Usage: "run after this delay (e.g. 30s, 5m)"},
		&ucli.StringFlag{Name: "at", Usage: "run at this time (RFC 3339, e.g. 2026-12-01T09:00:00Z)"},
		&ucli.StringFlag{Name: "queue", Usage: "queue instead of the kind's default (critical, default, low)"},
		&ucli.StringFlag{Name: "task-id", Usage: "task id; a second task with the same id is refused"},
		&ucli.BoolFlag{Name: "wait", Usage: "wait until the task finishes; exit 1 if it failed, was archived or (a warm) reported ids the database rejects"},
		&ucli.DurationFlag{Name: "wait-timeout", Usage: "give up waiting after this long (0: wait as long as it takes)"},
		outputFlag(),
	}
}

func enqueueCommand(io IO) *ucli.Command {
	var subs []*ucli.Command
	for _, k := range enqueueKinds() {
		subs = append(subs, &ucli.Command{
			Name:      k.name,
			Usage:     k.usage + " [" + k.kind + "]",
			Flags:     append(append(append([]ucli.Flag{}, k.flags...), enqueueFlags()...), connFlags()...),
			Action:    func(c *ucli.Context) error { return runEnqueue(c, io, k) },
			ArgsUsage: " ",
		})
	}
	subs = append(subs, enqueueJobCommand(io)) // enqueue_job.go: any kind by name
	return &ucli.Command{
		Name:        "enqueue",
		Usage:       "enqueue a job",
		Subcommands: subs,
		Action: func(c *ucli.Context) error {
			if c.Args().Present() {
				var names []string
				for _, k := range enqueueKinds() {
					names = append(names, k.name)
				}
				names = append(names, "job")
				return usagef("unknown job %q (jobs: %s)", c.Args().First(), strings.Join(names, ", "))
			}
			return usagef("name a job: cachekeeper enqueue <job> [flags] (see 'cachekeeper enqueue --help')")
		},
	}
}

func runEnqueue(c *ucli.Context, io IO, k enqueueKind) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q: every value is given by a flag (see 'cachekeeper enqueue %s --help')", c.Args().First(), k.name)
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	payload, err := k.args(c)
	if err != nil {
		return err
	}
	opts, err := enqueueOptions(c)
	if err != nil {
		return err
	}
	// Validate before touching Redis: a bad argument changes nothing.
	if err := payload.Validate(); err != nil {
		return flagError(err)
	}
	cfg, err := loadConfig(c, io)
	if err != nil {
		return err
	}
	// What the workers would refuse is refused here, before Redis: internal
	// keys, and queues and caches they do not serve.
	if err := checkAgainstConfig(cfg, payload, opts); err != nil {
		return err
	}
	coalesced := k.kind == tasks.KindInvalidate && c.Bool("coalesce")
	if coalesced {
		if err := checkCoalesce(c); err != nil {
			return err
		}
	}
	svc, err := connect(c.Context, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	tp, stopTracing, err := startTracing(c.Context, io, "cachekeeper-cli", nil) // tracing.go
	if err != nil {
		return err
	}
	defer stopTracing()
	svc.traced(tp)
	if coalesced {
		return invalidateCoalesced(c, io, svc, format)
	}
	info, err := enqueueRiding(c.Context, io, svc, payload, opts, c.String("task-id")) // enqueue_retry.go
	if err != nil {
		if errors.Is(err, tasks.ErrDuplicateTask) {
			return usagef("a task with id %q already exists; choose another --task-id", c.String("task-id"))
		}
		return err
	}
	if err := printTaskInfo(io, format, "enqueued", info); err != nil {
		return err
	}
	if !c.Bool("wait") {
		return nil
	}
	return waitForTask(c.Context, io, svc.inspector(), info, c.Duration("wait-timeout"), format)
}

func enqueueOptions(c *ucli.Context) ([]tasks.Option, error) {
	var opts []tasks.Option
	if d := c.Duration("in"); d != 0 {
		if d < 0 {
			return nil, usagef("--in %s must not be negative", d)
		}
		opts = append(opts, tasks.ProcessIn(d))
	}
	if s := c.String("at"); s != "" {
		if c.IsSet("in") {
			return nil, usagef("give --in or --at, not both")
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, usagef("--at %q is not an RFC 3339 time such as 2026-12-01T09:00:00Z", s)
		}
		opts = append(opts, tasks.ProcessAt(t))
	}
	if q := c.String("queue"); c.IsSet("queue") {
		if strings.TrimSpace(q) == "" {
			return nil, usagef("--queue must not be empty")
		}
		opts = append(opts, tasks.Queue(q))
	}
	if id := c.String("task-id"); c.IsSet("task-id") {
		if strings.TrimSpace(id) == "" {
			return nil, usagef("--task-id must not be empty")
		}
		opts = append(opts, tasks.TaskID(id))
	}
	if c.Duration("wait-timeout") < 0 {
		return nil, usagef("--wait-timeout must not be negative")
	}
	if c.Bool("wait") {
		// Keep the finished task's record so its outcome can be read.
		opts = append(opts, tasks.Retention(time.Hour))
	}
	return opts, nil
}

// checkAgainstConfig refuses a job the workers of cfg would refuse, naming
// the flag and the valid choices.
func checkAgainstConfig(cfg config.Config, p tasks.Payload, opts []tasks.Option) error {
	checker, err := tasks.NewOfflineClient(cfg.ClientOptions()...)
	if err != nil {
		return usagef("%v", err)
	}
	err = checker.Check(p, opts...)
	var ne *tasks.NameError
	if errors.As(err, &ne) {
		// `cache "usr" is not configured (...)` becomes `--cache "usr" is not configured (...)`.
		return usagef("--%s %s", ne.What, strings.TrimPrefix(ne.Error(), ne.What+" "))
	}
	return flagError(err)
}

// flagError rewrites a payload field error in terms of the CLI flag.
func flagError(err error) error {
	var fe *tasks.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field := fe.Field
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	flag := map[string]string{"ids": "id", "keys": "key", "allow_all": "yes"}[field]
	if flag == "" {
		flag = strings.ReplaceAll(field, "_", "-")
	}
	return fmt.Errorf("%w: --%s %s", tasks.ErrInvalidPayload, flag, fe.Msg)
}

type taskJSON struct {
	ID            string          `json:"id"`
	Kind          string          `json:"kind"`
	Queue         string          `json:"queue"`
	State         string          `json:"state"`
	NextProcessAt *time.Time      `json:"next_process_at,omitempty"`
	EnqueuedAt    *time.Time      `json:"enqueued_at,omitempty"`
	StartedAt     *time.Time      `json:"started_at,omitempty"`
	CompletedAt   *time.Time      `json:"completed_at,omitempty"`
	LastFailedAt  *time.Time      `json:"last_failed_at,omitempty"`
	Retried       int             `json:"retried"`
	MaxRetry      int             `json:"max_retry"`
	LastError     string          `json:"last_error,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
}

func toTaskJSON(info *asynq.TaskInfo) taskJSON {
	t := taskJSON{ID: info.ID, Kind: info.Type, Queue: info.Queue, State: info.State.String(),
		Retried: info.Retried, MaxRetry: info.MaxRetry, LastError: info.LastErr}
	if !info.NextProcessAt.IsZero() {
		n := info.NextProcessAt.UTC()
		t.NextProcessAt = &n
	}
	if len(info.Result) > 0 && json.Valid(info.Result) {
		t.Result = info.Result
	}
	t.EnqueuedAt, t.StartedAt, t.CompletedAt, t.LastFailedAt = taskTimes(info)
	return t
}

func printTaskInfo(io IO, format, verb string, info *asynq.TaskInfo) error {
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(toTaskJSON(info))
	}
	when := ""
	if info.State == asynq.TaskStateScheduled {
		when = " to run at " + info.NextProcessAt.UTC().Format(time.RFC3339)
	}
	_, err := fmt.Fprintf(io.Stdout, "%s %s task %s on queue %s (%s)%s\n", verb, info.Type, info.ID, info.Queue, info.State, when)
	if err == nil && len(info.Result) > 0 {
		_, err = fmt.Fprintf(io.Stdout, "result: %s\n", info.Result)
	}
	return err
}
