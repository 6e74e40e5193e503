package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// fastLane turns the empty-queue poll of one asynq server into a bounded
// blocking wait, so that a job on its queue is picked up as soon as it is
// enqueued instead of at the server's next poll.
//
// asynq's processor dequeues with a Lua script (EVALSHA, keys pending,
// paused, active and lease of the queue) and, when every queue is empty,
// sleeps TaskCheckInterval/2 plus a random part of it before trying again.
// The lane is a go-redis hook on the lane server's own Redis client: when
// that script finds the lane's queue empty, the hook waits with
// BLMOVE pending pending RIGHT RIGHT (which returns as soon as the list has an
// element and moves the tail element back onto the tail: the list is left as
// it was, atomically) and then runs the dequeue script once more, so asynq
// gets the job without sleeping. Only the lane server, which serves this one
// queue, gets the hook; the waits use a client of their own, closed by stop to
// end a wait at once on shutdown.
//
// The wait is bounded (FastLane.Wait, 1s by default) because asynq computes a
// job's lease (30s from the dequeue call) before calling: a job handed out
// after a wait starts with that much less of its first lease, which asynq's
// heartbeat extends every few seconds anyway.
//
// When asynq changes its dequeue script the hook no longer recognises it and
// the lane degrades to plain polling every FastLane.TaskCheckInterval.
type fastLane struct {
	queue      string
	pendingKey string
	pausedKey  string
	wait       time.Duration
	logger     *slog.Logger

	// waiter runs the blocking waits; nil when waiting is off.
	waiter redis.UniversalClient
	// off is set when Redis lacks BLMOVE (older than 6.2).
	off     atomic.Bool
	stopped chan struct{}
	once    sync.Once
}

// newFastLane prepares the lane for cfg.Queue; connOpt builds its clients.
func newFastLane(cfg config.FastLaneConfig, connOpt asynq.RedisConnOpt, logger *slog.Logger) (*fastLane, error) {
	l := &fastLane{
		queue:      cfg.Queue,
		pendingKey: asynqKeyOpen + cfg.Queue + asynqPendingEnd,
		pausedKey:  asynqKeyOpen + cfg.Queue + asynqPausedEnd,
		wait:       cfg.Wait,
		logger:     logger,
		stopped:    make(chan struct{}),
	}
	if l.wait > 0 {
		c, ok := connOpt.MakeRedisClient().(redis.UniversalClient)
		if !ok || c == nil {
			return nil, fmt.Errorf("worker fast lane: unsupported Redis connection option %T", connOpt)
		}
		l.waiter = c
	}
	return l, nil
}

// connOpt returns the connection option for the lane's asynq server: the
// server's client carries the lane's hook.
func (l *fastLane) connOpt(base asynq.RedisConnOpt) asynq.RedisConnOpt {
	return laneConnOpt{base: base, lane: l}
}

// stop ends a wait in progress and any later one; the lane then polls until
// its server stops.
func (l *fastLane) stop() {
	l.once.Do(func() {
		close(l.stopped)
		if l.waiter != nil {
			_ = l.waiter.Close()
		}
	})
}

func (l *fastLane) isStopped() bool {
	select {
	case <-l.stopped:
		return true
	default:
		return false
	}
}

// laneConnOpt is an asynq.RedisConnOpt whose client has the lane's hook.
type laneConnOpt struct {
	base asynq.RedisConnOpt
	lane *fastLane
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o laneConnOpt) MakeRedisClient() interface{} {
	c, ok := o.base.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		// asynq reports the unsupported option itself.
		return o.base.MakeRedisClient()
	}
	c.AddHook(laneHook{o.lane})
	return c
}

type laneHook struct{ l *fastLane }

func (h laneHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h laneHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h laneHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !errors.Is(err, redis.Nil) || !h.l.isDequeue(cmd) {
			return err
		}
		return h.l.waitAndRetry(ctx, cmd, next)
	}
}

// isDequeue reports whether cmd is asynq's dequeue script on the lane's queue.
func (l *fastLane) isDequeue(cmd redis.Cmder) bool {
	q, ok := dequeueQueue(cmd)
	return ok && q == l.queue
}

// waitAndRetry waits for the queue to have a job, then runs the dequeue
// script once more and stores its result in cmd.
func (l *fastLane) waitAndRetry(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
	if l.waiter == nil || l.off.Load() || l.isStopped() {
		return redis.Nil
	}
	if err := redisx.BLMove(ctx, l.waiter, l.pendingKey, l.pendingKey, "RIGHT", "RIGHT", l.wait).Err(); err != nil {
		switch {
		case errors.Is(err, redis.Nil), l.isStopped():
			// Waited in vain, or the worker is stopping.
		case strings.Contains(strings.ToLower(err.Error()), "unknown command"):
			l.off.Store(true)
			l.logger.Warn("Redis lacks BLMOVE (needs 6.2 or later): the fast lane polls instead",
				slog.String("queue", l.queue))
		default:
			l.logger.Debug("fast lane wait failed", slog.String("queue", l.queue), slog.String("error", err.Error()))
		}
		return redis.Nil
	}
	again := redis.NewCmd(ctx, cmd.Args()...)
	err := next(ctx, again)
	c := cmd.(*redis.Cmd) // checked by isDequeue
	c.SetVal(again.Val())
	c.SetErr(err)
	if errors.Is(err, redis.Nil) {
		// A job is there but we did not get it: another server took it, or the
		// queue is paused. While it is paused, wait here instead of letting
		// asynq poll every few milliseconds.
		if n, perr := l.waiter.Exists(ctx, l.pausedKey).Result(); perr == nil && n > 0 {
			select {
			case <-time.After(l.wait):
			case <-l.stopped:
			}
		}
	}
	return err
}
