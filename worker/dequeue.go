package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynq's dequeue is one Lua script call per queue (EVALSHA, or EVAL when
// Redis lost the script) with four keys, the first two
// asynq:{<queue>}:pending and asynq:{<queue>}:paused (asynq's key layout,
// internal/base). A nil reply means the queue had nothing to hand out.
const (
	asynqKeyOpen    = "asynq:{"
	asynqPendingEnd = "}:pending"
	asynqPausedEnd  = "}:paused"
)

// dequeueQueue returns the queue of cmd when cmd is asynq's dequeue script,
// without allocating (it runs for every command of a server's client).
func dequeueQueue(cmd redis.Cmder) (string, bool) {
	if _, ok := cmd.(*redis.Cmd); !ok {
		return "", false
	}
	args := cmd.Args()
	if len(args) < 7 {
		return "", false
	}
	name, _ := args[0].(string)
	if name != "evalsha" && name != "eval" && !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return "", false
	}
	switch n := args[2].(type) {
	case int:
		if n != 4 {
			return "", false
		}
	case int64:
		if n != 4 {
			return "", false
		}
	default:
		return "", false
	}
	pending, _ := args[3].(string)
	paused, _ := args[4].(string)
	if !strings.HasPrefix(pending, asynqKeyOpen) || !strings.HasSuffix(pending, asynqPendingEnd) ||
		!strings.HasPrefix(paused, asynqKeyOpen) || !strings.HasSuffix(paused, asynqPausedEnd) {
		return "", false
	}
	q := pending[len(asynqKeyOpen) : len(pending)-len(asynqPendingEnd)]
	if paused[len(asynqKeyOpen):len(paused)-len(asynqPausedEnd)] != q {
		return "", false
	}
	return q, true
}

// emptySkip spares a busy server the round trip of asking Redis for a job
// from a queue it has just found empty.
//
// asynq's processor tries a server's queues one by one, in a weighted random
// order, on every dequeue, until one hands out a job; a queue with nothing
// costs a round trip each time. With the default layout (critical, default
// and low) and work on one queue only, that is about one wasted script call
// per job, a third of the Redis traffic of a no-op job. After a queue comes
// back empty, emptySkip answers "empty" for it without asking Redis for the
// next Backoff (per server). The weights are untouched (only queues without
// jobs are skipped); a job arriving on a skipped queue while the server is
// busy elsewhere waits at most Backoff more. When every queue is empty asynq
// sleeps TaskCheckInterval (longer than Backoff) and then asks Redis again.
type emptySkip struct {
	backoff time.Duration
	mu      sync.Mutex
	until   map[string]int64 // queue -> unix nanos
}

// skipConnOpt is an asynq.RedisConnOpt whose client (one per server) has an
// emptySkip hook.
type skipConnOpt struct {
	base    asynq.RedisConnOpt
	backoff time.Duration
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o skipConnOpt) MakeRedisClient() interface{} {
	c, ok := o.base.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		return o.base.MakeRedisClient() // asynq reports the unsupported option
	}
	c.AddHook(&emptySkip{backoff: o.backoff, until: map[string]int64{}})
	return c
}

func (s *emptySkip) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *emptySkip) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (s *emptySkip) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		q, ok := dequeueQueue(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		until := s.until[q]
		s.mu.Unlock()
		if now < until {
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		err := next(ctx, cmd)
		if errors.Is(err, redis.Nil) {
			s.mu.Lock()
			s.until[q] = now + int64(s.backoff)
			s.mu.Unlock()
		}
		return err
	}
}
