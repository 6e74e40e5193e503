package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Backoff on dequeue errors. asynq's processor tries its next dequeue at
// once after one that failed (it sleeps only when the queues are empty), so
// an idle worker against a Redis that refuses the dequeue script (out of
// memory, no EVAL permission) sends tens of thousands of commands a second
// and burns a core. The backoff hook, on each server's client, sleeps after
// a failed dequeue, doubling from dequeueBackoffMin to dequeueBackoffMax,
// and the worker's dequeue health (Worker.DequeueErr, /readyz) says so.
const (
	dequeueBackoffMin = 50 * time.Millisecond
	dequeueBackoffMax = time.Second
)

// dequeueHealth is whether the servers can take jobs from Redis.
type dequeueHealth struct {
	logger *slog.Logger
	// stopped ends every backoff sleep (the worker is stopping).
	stopped chan struct{}
	once    sync.Once

	mu      sync.Mutex
	err     error
	since   time.Time
	failing map[*dequeueBackoff]bool
}

func newDequeueHealth(logger *slog.Logger) *dequeueHealth {
	return &dequeueHealth{logger: logger, stopped: make(chan struct{}), failing: map[*dequeueBackoff]bool{}}
}

func (h *dequeueHealth) stop() { h.once.Do(func() { close(h.stopped) }) }

// report records one server's dequeue outcome; the state changes (and is
// logged once) when the first server fails and when the last one recovers.
func (h *dequeueHealth) report(b *dequeueBackoff, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := len(h.failing) > 0
	if err != nil {
		h.failing[b] = true
		h.err = err
	} else {
		delete(h.failing, b)
	}
	switch now := len(h.failing) > 0; {
	case now && !was:
		h.since = time.Now()
		h.logger.Warn("jobs cannot be dequeued from Redis; backing off", slog.String("error", err.Error()),
			slog.Duration("max_backoff", dequeueBackoffMax))
	case !now && was:
		h.logger.Info("jobs dequeued again", slog.Duration("after", time.Since(h.since).Round(time.Millisecond)))
		h.err = nil
	}
}

// Err is the last dequeue error while some server cannot dequeue, else nil.
func (h *dequeueHealth) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return nil
	}
	return h.err
}

// backoffConnOpt is an asynq.RedisConnOpt whose client (one per server)
// backs off after failed dequeues.
type backoffConnOpt struct {
	base   asynq.RedisConnOpt
	health *dequeueHealth
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o backoffConnOpt) MakeRedisClient() interface{} {
	c, ok := o.base.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		return o.base.MakeRedisClient() // asynq reports the unsupported option
	}
	c.AddHook(&dequeueBackoff{health: o.health})
	return c
}

// dequeueBackoff is one server's backoff.
type dequeueBackoff struct {
	health *dequeueHealth
	mu     sync.Mutex
	next   time.Duration
}

// after records a dequeue's outcome and returns how long to sleep.
func (b *dequeueBackoff) after(err error) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		if b.next != 0 {
			b.next = 0
			b.health.report(b, nil)
		}
		return 0
	}
	b.health.report(b, err)
	b.next = min(max(b.next*2, dequeueBackoffMin), dequeueBackoffMax)
	return b.next
}

func (b *dequeueBackoff) DialHook(next redis.DialHook) redis.DialHook { return next }

func (b *dequeueBackoff) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (b *dequeueBackoff) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if _, ok := dequeueQueue(cmd); !ok {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		if redisx.IsNoScript(err) {
			return err // go-redis sends the script itself next
		}
		if err == nil || errors.Is(err, redis.Nil) {
			b.after(nil)
			return err
		}
		t := time.NewTimer(b.after(err))
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.health.stopped:
		case <-ctx.Done():
		}
		return err
	}
}
