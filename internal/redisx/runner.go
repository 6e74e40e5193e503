package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Call is one script call of a pipeline; its keys are in one hash slot.
type Call struct {
	Script *Script
	Keys   []string
	Args   []any
}

// EvalAll runs calls in one pipeline of EVALSHA and returns their commands,
// in order; an error of a single call is left in its command. Calls answered
// NOSCRIPT (script cache flushed, failover, first use) did not run: their
// scripts are loaded (on every master of a cluster) and only those calls are
// sent again. The error is non-nil only when Redis gave no reply at all
// (connection, context) or a script cannot be loaded.
func EvalAll(ctx context.Context, rdb redis.UniversalClient, calls []Call) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := rdb.Pipeline()
		for _, i := range todo {
			cmds[i] = calls[i].Script.EvalSha(ctx, pipe, calls[i].Keys, calls[i].Args...)
		}
		_, _ = pipe.Exec(ctx)
		var again []int
		loaded := map[*Script]bool{}
		for _, i := range todo {
			err := cmds[i].Err()
			switch {
			case err == nil || errors.Is(err, redis.Nil):
			case IsNoScript(err) && attempt == 0:
				if s := calls[i].Script; !loaded[s] {
					if err := s.Load(ctx, rdb).Err(); err != nil {
						return nil, fmt.Errorf("load script %s: %w", s.name, err)
					}
					loaded[s] = true
				}
				again = append(again, i)
			case !IsServerError(err):
				return nil, err // no reply at all: connection or context
			}
			// Any other server error stays with its command.
		}
		todo = again
	}
	return cmds, nil
}

// RunPerSlot runs script over keys, one call per hash slot group (one call
// in all off a cluster), pipelined through EvalAll, and returns the
// element-wise sum of the integer arrays the calls return.
func RunPerSlot(ctx context.Context, rdb redis.UniversalClient, script *Script, keys []string, args ...any) ([]int64, error) {
	groups := SplitBySlot(rdb, keys)
	calls := make([]Call, len(groups))
	for i, g := range groups {
		calls[i] = Call{Script: script, Keys: g, Args: args}
	}
	cmds, err := EvalAll(ctx, rdb, calls)
	if err != nil {
		return nil, err
	}
	var sum []int64
	for _, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = make([]int64, len(v))
		}
		for i := 0; i < len(v) && i < len(sum); i++ {
			sum[i] += v[i]
		}
	}
	return sum, nil
}

// Pipelined sends, in one pipeline, what before adds (may be nil) and then n
// calls of script built by call (each an EvalSha on the pipeline). When the
// server does not know the script yet (first use, restart, SCRIPT FLUSH), it
// loads it (on every master of a cluster) and sends the whole pipeline
// again, so the commands of before and the calls stay together. The error is
// pipe.Exec's: the first failed command's.
func Pipelined(ctx context.Context, rdb redis.UniversalClient, script *Script, n int, before func(redis.Pipeliner), call func(redis.Pipeliner, int) *redis.Cmd) ([]*redis.Cmd, error) {
	send := func() ([]*redis.Cmd, error) {
		pipe := rdb.Pipeline()
		if before != nil {
			before(pipe)
		}
		cmds := make([]*redis.Cmd, n)
		for i := range cmds {
			cmds[i] = call(pipe, i)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := send()
	if err == nil || !IsNoScript(err) {
		return cmds, err
	}
	if err := script.Load(ctx, rdb).Err(); err != nil {
		return nil, fmt.Errorf("load script %s: %w", script.name, err)
	}
	return send()
}

// IsNoScript reports a NOSCRIPT reply: the server does not hold the script.
func IsNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}

// IsServerError reports an error reply from Redis, as opposed to no reply.
func IsServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
