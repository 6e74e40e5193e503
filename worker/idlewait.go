package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// idleWait makes an idle worker's servers wait for work instead of polling
// for it (worker.idle_wait).
//
// asynq's processor asks Redis for a job from each of its server's queues,
// in turn, and sleeps task_check_interval when none had one: four servers
// on three queues cost about 36 Redis commands a second doing nothing (the
// dequeue script runs EXISTS and RPOPLPUSH inside). idleWait is a go-redis
// hook on each main server's client: once every queue was found empty, a
// dequeue call waits, before it runs, until a queue may have a job again or
// IdleWait passes; the sweep then runs as usual, so a job on any queue is
// found. Which queues may have a job is learnt by one blocking
// BLMOVE pending pending RIGHT RIGHT per empty queue (the list is left as
// it was; it returns as soon as the list has an element), on connections
// of their own. With the servers' poll interval at 5ms while the wait is
// on, a job enqueued on an idle worker is picked up within milliseconds,
// and the idle worker costs a sweep per server per IdleWait.
//
// asynq computes a job's lease (30s from the dequeue call) before calling;
// after a wait the hook moves it to 30s from the moment the call runs
// (refreshLease), so a job handed out after a wait keeps its whole lease.
//
// The same hook spares the forwarder's polls (asynq moves due scheduled and
// retry jobs to pending with one script call per queue and state, every
// delayed_task_check_interval): it reads the earliest due time of each
// scheduled and retry set (ZRANGE 0 0, at most every forwardRecheck) and
// runs the script only when a job is due, answering "0 moved" otherwise.
type idleWait struct {
	queues []string
	wait   time.Duration
	logger *slog.Logger
	// watcher runs the blocking BLMOVEs; closed by stop.
	watcher redis.UniversalClient

	mu sync.Mutex
	// empty holds the queues found empty and not known to have a job since.
	empty map[string]bool
	// wake is closed when a queue may have a job again, then replaced.
	wake chan struct{}
	// arm[q] asks q's watcher to wait for a job on q.
	arm map[string]chan struct{}
	// due holds the forwarder's knowledge of each scheduled and retry set.
	due map[string]dueState

	stopped chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// dueState is what the hook knows of a scheduled or retry set: its earliest
// score (unix seconds; 0 when empty), read at checked.
type dueState struct {
	earliest int64
	checked  time.Time
}

// Recheck intervals of the forwarder's sets. A job scheduled after a check
// is seen at the next one, which runs the script at once if it is due: with
// the forwarder's calls every delayed_task_check_interval (250ms), a
// scheduled job starts within 1s of its due time, as without the hook.
// Retries are scheduled at least 15s ahead (asynq's retry delay), so a
// check every 5s sees each before it is due.
const (
	forwardRecheckScheduled = 750 * time.Millisecond
	forwardRecheckRetry     = 5 * time.Second
)

// newIdleWait prepares the wait for queues; connOpt builds its watchers'
// client, with one connection per queue.
func newIdleWait(queues []string, wait time.Duration, connOpt asynq.RedisConnOpt, logger *slog.Logger) (*idleWait, error) {
	c, ok := connOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		return nil, fmt.Errorf("worker idle wait: unsupported Redis connection option %T", connOpt)
	}
	iw := &idleWait{queues: queues, wait: wait, logger: logger, watcher: c,
		empty: map[string]bool{}, wake: make(chan struct{}), arm: map[string]chan struct{}{},
		due: map[string]dueState{}, stopped: make(chan struct{})}
	for _, q := range queues {
		iw.arm[q] = make(chan struct{}, 1)
	}
	for _, q := range queues {
		iw.wg.Add(1)
		go func() {
			defer iw.wg.Done()
			iw.watch(q)
		}()
	}
	return iw, nil
}

// stop ends every wait and the watchers.
func (iw *idleWait) stop() {
	iw.once.Do(func() {
		close(iw.stopped)
		_ = iw.watcher.Close()
		iw.wg.Wait()
	})
}

func (iw *idleWait) isStopped() bool {
	select {
	case <-iw.stopped:
		return true
	default:
		return false
	}
}

// connOpt returns a connection option whose clients carry the hook.
func (iw *idleWait) connOpt(base asynq.RedisConnOpt) asynq.RedisConnOpt {
	return idleConnOpt{base: base, iw: iw}
}

type idleConnOpt struct {
	base asynq.RedisConnOpt
	iw   *idleWait
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o idleConnOpt) MakeRedisClient() interface{} {
	c, ok := o.base.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		return o.base.MakeRedisClient() // asynq reports the unsupported option
	}
	c.AddHook(idleHook{o.iw})
	return c
}

type idleHook struct{ iw *idleWait }

func (h idleHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h idleHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h idleHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if q, ok := dequeueQueue(cmd); ok {
			if h.iw.waitIfIdle() {
				refreshLease(cmd)
			}
			err := next(ctx, cmd)
			switch {
			case errors.Is(err, redis.Nil):
				h.iw.markEmpty(q)
			case err == nil:
				h.iw.markBusy(q)
			default:
				// Redis failed the dequeue (out of memory, a lost
				// connection): what q holds is unknown, so every server
				// polls (the dequeue backoff paces it) instead of waiting,
				// and sees at once when Redis takes dequeues again.
				h.iw.notify(q)
			}
			return err
		}
		if set, ok := forwardSet(cmd); ok {
			return h.iw.forward(ctx, cmd, set, next)
		}
		return next(ctx, cmd)
	}
}

// waitIfIdle waits, when every queue was found empty, until one may have a
// job, IdleWait passes, or the worker stops. It reports whether it waited.
func (iw *idleWait) waitIfIdle() bool {
	iw.mu.Lock()
	idle := len(iw.empty) == len(iw.queues)
	wake := iw.wake
	iw.mu.Unlock()
	if !idle || iw.isStopped() {
		return false
	}
	t := time.NewTimer(iw.wait)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-iw.stopped:
	}
	return true
}

// asynqLease is asynq's lease of a dequeued job (rdb.LeaseDuration).
const asynqLease = 30 * time.Second

// refreshLease moves the lease expiry asynq put in a dequeue call (ARGV[1],
// unix seconds, computed before the call) to now plus asynq's lease, so
// that a job handed out after a wait gets its whole lease in Redis. asynq's
// processor keeps the earlier expiry in memory, which only makes it renew
// sooner (its heartbeat extends every lease each 5s).
func refreshLease(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 8 {
		return
	}
	if old, ok := args[7].(int64); ok {
		if now := time.Now().Add(asynqLease).Unix(); now > old {
			args[7] = now
		}
	}
}

func (iw *idleWait) markEmpty(q string) {
	iw.mu.Lock()
	known := iw.empty[q]
	if _, served := iw.arm[q]; served {
		iw.empty[q] = true
	}
	iw.mu.Unlock()
	if !known {
		select {
		case iw.arm[q] <- struct{}{}:
		default:
		}
	}
}

func (iw *idleWait) markBusy(q string) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if iw.empty[q] {
		delete(iw.empty, q)
	}
}

// notify says q may have a job: the waiting dequeues go.
func (iw *idleWait) notify(q string) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	delete(iw.empty, q)
	close(iw.wake)
	iw.wake = make(chan struct{})
}

// watch waits for a job on q whenever q is marked empty, until stop.
func (iw *idleWait) watch(q string) {
	pending, paused := asynqKeyOpen+q+asynqPendingEnd, asynqKeyOpen+q+asynqPausedEnd
	ctx := context.Background()
	for {
		select {
		case <-iw.stopped:
			return
		case <-iw.arm[q]:
		}
		for !iw.isStopped() {
			iw.mu.Lock()
			empty := iw.empty[q]
			iw.mu.Unlock()
			if !empty {
				break
			}
			err := iw.watcher.BLMove(ctx, pending, pending, "RIGHT", "RIGHT", iw.wait).Err()
			switch {
			case iw.isStopped():
				return
			case errors.Is(err, redis.Nil):
				continue // nothing came: wait again while q is still empty
			case err != nil:
				// Cannot wait (BLMOVE needs Redis 6.2): poll as asynq does.
				iw.logger.LogAttrs(ctx, slog.LevelDebug, "idle wait failed; polling", slog.String("queue", q), slog.String("error", err.Error()))
				iw.notify(q)
				iw.sleep(time.Second)
				continue
			}
			// A job is there; while the queue is paused it stays there:
			// wait here rather than wake the servers for nothing.
			if n, err := iw.watcher.Exists(ctx, paused).Result(); err == nil && n > 0 {
				iw.sleep(iw.wait)
				continue
			}
			iw.notify(q)
		}
	}
}

func (iw *idleWait) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-iw.stopped:
	}
}

// forwardSet returns the scheduled or retry set of cmd when cmd is asynq's
// forward script (EVALSHA, 2 keys: asynq:{q}:scheduled or asynq:{q}:retry,
// then asynq:{q}:pending).
func forwardSet(cmd redis.Cmder) (string, bool) {
	if _, ok := cmd.(*redis.Cmd); !ok {
		return "", false
	}
	args := cmd.Args()
	if len(args) < 5 {
		return "", false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return "", false
	}
	if n, ok := args[2].(int); !ok || n != 2 {
		return "", false
	}
	set, _ := args[3].(string)
	pending, _ := args[4].(string)
	if !strings.HasPrefix(set, asynqKeyOpen) || !strings.HasPrefix(pending, asynqKeyOpen) || !strings.HasSuffix(pending, asynqPendingEnd) {
		return "", false
	}
	if !strings.HasSuffix(set, "}:scheduled") && !strings.HasSuffix(set, "}:retry") {
		return "", false
	}
	return set, true
}

// forward runs asynq's forward script on set only when a job of set may be
// due, and answers 0 (nothing moved) otherwise.
func (iw *idleWait) forward(ctx context.Context, cmd redis.Cmder, set string, next redis.ProcessHook) error {
	now := time.Now()
	recheck := forwardRecheckScheduled
	if strings.HasSuffix(set, "}:retry") {
		recheck = forwardRecheckRetry
	}
	iw.mu.Lock()
	st, known := iw.due[set]
	iw.mu.Unlock()
	if !known || now.Sub(st.checked) >= recheck {
		zc := redis.NewZSliceCmd(ctx, "zrange", set, 0, 0, "withscores")
		if err := next(ctx, zc); err != nil {
			return next(ctx, cmd) // cannot tell: run the script
		}
		st = dueState{checked: now}
		if z := zc.Val(); len(z) > 0 {
			st.earliest = int64(z[0].Score)
		}
		iw.mu.Lock()
		iw.due[set] = st
		iw.mu.Unlock()
	}
	if st.earliest == 0 || st.earliest > now.Unix() {
		cmd.(*redis.Cmd).SetVal(int64(0))
		return nil
	}
	err := next(ctx, cmd)
	// It moves at most 100 jobs a call: look again next time.
	iw.mu.Lock()
	delete(iw.due, set)
	iw.mu.Unlock()
	return err
}

// idlePoll is the main servers' poll interval while the idle wait is on.
const idlePoll = 5 * time.Millisecond
