package cli

import (
	"encoding/json"
	"errors"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// enqueueJobCommand enqueues a job of any kind by name with JSON arguments:
// a built-in kind, or a kind of the application's own that a running
// worker handles (internal/catalog).
func enqueueJobCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "job",
		Usage: "enqueue a job of any kind by name, its arguments as JSON: a built-in kind or one of the application's own that a running worker handles",
		Description: "For example: cachekeeper enqueue job --kind mail:welcome --args '{\"user_id\": 42}' --wait\n" +
			"A kind of the application's own (declared in Go, worker.WithKind) is known while a worker that handles it\n" +
			"runs; its arguments are checked against the shape that worker recorded (fields, JSON types, required\n" +
			"fields), and the job goes to the kind's own queue unless --queue says otherwise.",
		ArgsUsage: " ",
		Flags: append(append([]ucli.Flag{
			&ucli.StringFlag{Name: "kind", Usage: "the job's kind, e.g. cache:warm or mail:welcome"},
			&ucli.StringFlag{Name: "args", Usage: "the job's arguments as a JSON object, e.g. '{\"user_id\": 42}'"},
		}, enqueueFlags()...), connFlags()...),
		Action: func(c *ucli.Context) error { return runEnqueueJob(c, io) },
	}
}

func runEnqueueJob(c *ucli.Context, io IO) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q: give the kind with --kind and the arguments with --args", c.Args().First())
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	kind, args := strings.TrimSpace(c.String("kind")), c.String("args")
	if kind == "" {
		return usagef("--kind is required, for example --kind cache:warm or a kind of the application's own")
	}
	if strings.TrimSpace(args) == "" {
		return usagef("--args is required: the job's arguments as a JSON object, for example --args '{\"name\": \"ada\"}'")
	}
	if !json.Valid([]byte(args)) {
		return usagef("--args is not valid JSON: %s", args)
	}
	opts, err := enqueueOptions(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c, io)
	if err != nil {
		return err
	}
	var payload tasks.Payload
	if _, builtin := tasks.Lookup(kind); builtin {
		if payload, err = tasks.Decode(kind, []byte(args)); err != nil {
			return usagef("--args: %v", err)
		}
		if err := checkAgainstConfig(cfg, payload, opts); err != nil {
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
	if payload == nil {
		k, err := keys.New(cfg.KeyPrefix)
		if err != nil {
			return usagef("%v", err)
		}
		spec, ok, err := catalog.Lookup(c.Context, svc.redis, k, kind)
		if err != nil {
			return err
		}
		if !ok {
			known, err := catalog.Known(c.Context, svc.redis, k)
			if err != nil {
				return err
			}
			return usagef("--kind %q: no running worker handles it (known: %s)", kind, strings.Join(catalog.Names(known), ", "))
		}
		if payload, err = tasks.NewArgs(spec, []byte(args)); err != nil {
			return usagef("--args: %v", err)
		}
		if err := checkAgainstConfig(cfg, payload, opts); err != nil {
			return err
		}
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
