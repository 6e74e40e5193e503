package cli

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/hibiken/asynq"
	ucli "github.com/urfave/cli/v2"
)

// complete answers the shell completion scripts: args are the words typed
// before the one being completed, then completionFlag, then that word (cur).
// It prints the candidates, one a line; the shell keeps those starting with
// cur, and completes file names when there are none (--config).
//
// Candidates: subcommands; with cur starting with "-", the command's flags;
// after --cache, --queue, --state or -o, their values (cache names and
// queues from the configuration the words name, or the default one); the
// task ids of Redis for `task show|run|delete|archive|cancel`, and queue
// names for `queues pause|resume`.
func complete(ctx context.Context, app *ucli.App, args []string, io IO) int {
	i := slices.Index(args, completionFlag)
	words, cur := args[:i], ""
	if i+1 < len(args) {
		cur = args[i+1]
	}
	var (
		cmds  = app.Commands
		leaf  *ucli.Command
		path  []string
		flags = map[string]string{} // flag values typed so far (for --config)
	)
	globals := connFlags()
	for j := 0; j < len(words); j++ {
		w := words[j]
		if strings.HasPrefix(w, "-") {
			name, hasValue := flagName(w)
			takes, known := flagTakesValue(leaf, name)
			if !known {
				takes = slices.Contains(globalFlags, name)
			}
			if takes && !hasValue && j+1 < len(words) {
				if name == "c" {
					name = "config"
				}
				flags[name] = words[j+1]
				j++
			}
			continue
		}
		if leaf != nil && len(leaf.Subcommands) == 0 {
			continue // a positional argument
		}
		c := findCommand(cmds, w)
		if c == nil {
			continue
		}
		path, leaf, cmds = append(path, c.Name), c, c.Subcommands
	}
	out := func(cands ...string) {
		for _, c := range cands {
			fmt.Fprintln(io.Stdout, c)
		}
	}
	// The value of the flag just typed.
	if len(words) > 0 && strings.HasPrefix(words[len(words)-1], "-") {
		name, hasValue := flagName(words[len(words)-1])
		takes, known := flagTakesValue(leaf, name)
		if !known {
			takes = slices.Contains(globalFlags, name)
		}
		if takes && !hasValue {
			out(flagValues(ctx, name, path, flags, io)...)
			return ExitOK
		}
	}
	if strings.HasPrefix(cur, "-") {
		fl := globals
		if leaf != nil {
			fl = leaf.Flags
		}
		var names []string
		for _, f := range fl {
			for _, n := range f.Names() {
				if len(n) > 1 {
					names = append(names, "--"+n)
				}
			}
		}
		out(append(names, "--help")...)
		return ExitOK
	}
	if leaf == nil || len(leaf.Subcommands) > 0 {
		for _, c := range cmds {
			if !c.Hidden {
				out(c.Name)
			}
		}
		return ExitOK
	}
	switch strings.Join(path, " ") {
	case "task show", "task run", "task delete", "task archive", "task cancel":
		out(taskIDs(ctx, flags, io)...)
	case "queues pause", "queues resume":
		out(queueNames(ctx, flags, io)...)
	case "completion":
		out(completionShells...)
	case "schedule run":
		if cfg, err := (config.Flags{File: flags["config"]}).Load(io.Env); err == nil {
			for _, e := range cfg.Schedule {
				out(e.Name)
			}
		}
	}
	return ExitOK
}

// flagValues are the candidates for the value of flag name.
func flagValues(ctx context.Context, name string, path []string, flags map[string]string, io IO) []string {
	switch name {
	case "cache":
		cfg, err := (config.Flags{File: flags["config"]}).Load(io.Env)
		if err != nil {
			return nil
		}
		return cfg.CacheNames()
	case "queue":
		return queueNames(ctx, flags, io)
	case "state":
		if len(path) > 0 && path[0] == "task" {
			return taskStates
		}
	case "output", "o":
		return []string{"table", "json"}
	case "log-level":
		return []string{"debug", "info", "warn", "error"}
	}
	return nil // file names, durations, free text: the shell's default
}

// queueNames are the configuration's queues and those Redis knows.
func queueNames(ctx context.Context, flags map[string]string, io IO) []string {
	cfg, err := (config.Flags{File: flags["config"], RedisURL: flags["redis-url"]}).Load(io.Env)
	if err != nil {
		return nil
	}
	names := map[string]bool{}
	for q := range cfg.Worker.Queues {
		names[q] = true
	}
	if insp, closeFn, ok := completionInspector(cfg); ok {
		defer closeFn()
		if qs, err := insp.Queues(); err == nil {
			for _, q := range qs {
				names[q] = true
			}
		}
	}
	out := make([]string, 0, len(names))
	for q := range names {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// taskIDs are up to 200 ids of tasks in Redis, of every queue (or --queue).
func taskIDs(ctx context.Context, flags map[string]string, io IO) []string {
	cfg, err := (config.Flags{File: flags["config"], RedisURL: flags["redis-url"]}).Load(io.Env)
	if err != nil {
		return nil
	}
	insp, closeFn, ok := completionInspector(cfg)
	if !ok {
		return nil
	}
	defer closeFn()
	queues := []string{flags["queue"]}
	if queues[0] == "" {
		if queues, err = insp.Queues(); err != nil {
			return nil
		}
	}
	var ids []string
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			insp.ListActiveTasks, insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks, insp.ListArchivedTasks,
		} {
			ts, err := list(q, asynq.PageSize(50))
			if err != nil {
				continue
			}
			for _, t := range ts {
				ids = append(ids, t.ID)
			}
			if len(ids) >= 200 {
				return ids[:200]
			}
		}
	}
	return ids
}

// completionInspector connects for a completion, bounded so that a
// Redis that does not answer costs the shell a second, not five.
func completionInspector(cfg config.Config) (*asynq.Inspector, func(), bool) {
	rdb, err := cfg.Redis.NewClient()
	if err != nil {
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if rdb.Ping(ctx).Err() != nil {
		_ = rdb.Close()
		return nil, nil, false
	}
	return asynq.NewInspectorFromRedisClient(rdb), func() { _ = rdb.Close() }, true
}
