package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Recovery of dead workers' jobs, in seconds instead of asynq's minutes.
//
// asynq hands a killed worker's jobs back only once their 30s lease has
// expired and its recoverer's one-minute pass has come by (about 90s in
// practice), and never hands back a job that is active with no lease entry
// (asynq #1051, #1144: after Redis errors or a restore). Every cachekeeper
// worker process therefore runs a recoverer of its own: every
// recoverInterval it reads the ids of the jobs live workers list as running
// (asynq's heartbeat rewrites each server's asynq:workers:{...} hash every
// 5s, with a 10s TTL) and, per queue, runs redisx.RecoverRequeue (lua/recover_requeue.lua), which requeues the
// active jobs no live worker lists whose lease has not been extended for
// worker.recover_after (or that have no lease).
//
// Why this never re-runs the job of a live worker: asynq extends the lease
// of every running job on each 5s heartbeat, so a live worker's lease is at
// most about 6s old (1s score resolution), below the 8s minimum of
// recover_after; and a running job is in its server's workers hash from the
// first heartbeat after it started, while before that its lease is fresh.
// Both conditions must fail before a job is touched, and the script checks
// and moves atomically, so two recoverers (one per worker process) cannot
// both requeue it, and asynq's own recoverer, racing it, finds it gone.
//
// The one case it cannot tell apart is a worker alive but cut off from
// Redis (or refused its heartbeat writes) for longer than recover_after: it
// looks dead, while asynq lets its handler run until its in-memory lease
// ends (30s after the last extension). selfFence (selffence.go) and the
// lease tap (leasetap.go) keep such a worker from running or changing a job
// another worker has taken over; a worker's own running jobs always count
// as live for its own recoverer.
const (
	recoverInterval = 2 * time.Second
	// asynqLeaseSeconds is asynq's lease duration (internal/rdb.LeaseDuration).
	asynqLeaseSeconds = 30
	// maxFastRecoveries is how often RecoverRequeue hands back one job; after
	// that asynq's recoverer does, counting retries, so a job that kills its
	// worker every time ends archived instead of looping.
	maxFastRecoveries = 3
	// fenceMargin is how long before other workers may requeue its jobs a
	// worker cut off from Redis cancels them.
	fenceMargin = 3 * time.Second
	// fenceCheckInterval is how often the self-fence looks at its state.
	fenceCheckInterval = 250 * time.Millisecond
)

// recoverer is the worker's dead-job recovery loop.
type recoverer struct {
	rdb        redis.UniversalClient
	queues     []string
	staleAfter time.Duration
	logger     *slog.Logger
	requeued   prometheus.Counter
	// fence is told each time a pass reached Redis.
	fence *selfFence
}

// registerRecoverer adds the recovery loop unless worker.recover_after is 0.
func (w *Worker) registerRecoverer() error {
	after := w.cfg.Worker.RecoverAfter
	if after <= 0 {
		return nil
	}
	c, err := recoveredCounter(w.deps.Registry)
	if err != nil {
		return err
	}
	queues := make([]string, 0, len(w.cfg.Worker.Queues))
	for q := range w.cfg.Worker.Queues {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	w.leases = newLeaseBook(w.deps.Redis, w.logger)
	r := &recoverer{rdb: w.deps.Redis, queues: queues, staleAfter: after, logger: w.logger, requeued: c,
		fence: newSelfFence(after-fenceMargin, w.leases, w.logger)}
	w.fence = r.fence
	w.addRunner("dead-job recoverer", r.run)
	return nil
}

func recoveredCounter(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "cachekeeper", Name: "jobs_recovered_total",
		Help: "Active jobs of dead workers (or with no lease) handed back to their queue by the recoverer.",
	})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("worker metrics: %w", err)
	}
	return c, nil
}

func (r *recoverer) run(ctx context.Context) error {
	t := time.NewTicker(recoverInterval)
	defer t.Stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.fence.watch(ctx, fenceCheckInterval) }()
	defer wg.Wait()
	var failing bool
	for {
		err := r.pass(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			r.logger.Warn("dead-job recovery cannot reach Redis; retrying", slog.String("error", err.Error()))
			failing = true
		case err == nil && failing:
			r.logger.Info("dead-job recovery reaches Redis again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pass runs one recovery over every queue and returns the first error.
func (r *recoverer) pass(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, recoverInterval)
	defer cancel()
	live, err := liveTaskIDs(ctx, r.rdb, r.fence.ok)
	if err != nil {
		return err
	}
	// This worker's own running jobs are live whatever its heartbeat managed
	// to write (Redis out of memory refuses the heartbeat, not the reads).
	live = append(live, r.fence.runningIDs()...)
	for _, q := range r.queues {
		res, err := r.recoverQueue(ctx, q, live)
		if err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		if n := len(res.requeued); n > 0 {
			r.requeued.Add(float64(n))
			r.logger.Warn("requeued jobs of a dead worker", slog.String("queue", q), slog.Int("jobs", n), slog.Any("task_ids", res.requeued))
		}
		if len(res.handed) > 0 {
			r.logger.Warn("jobs recovered too often; left to asynq's recoverer (counts a retry, archives when retries run out)",
				slog.String("queue", q), slog.Any("task_ids", res.handed))
		}
		if len(res.dropped) > 0 {
			r.logger.Warn("dropped active ids whose task is gone", slog.String("queue", q), slog.Any("task_ids", res.dropped))
		}
	}
	return nil
}

type recoverResult struct{ requeued, handed, dropped []string }

func (r *recoverer) recoverQueue(ctx context.Context, queue string, live []string) (recoverResult, error) {
	args := make([]any, 0, 4+len(live))
	args = append(args, keys.AsynqTaskPrefix(queue), int(r.staleAfter/time.Second), asynqLeaseSeconds, maxFastRecoveries)
	for _, id := range live {
		args = append(args, id)
	}
	v, err := redisx.RecoverRequeue.Run(ctx, r.rdb, []string{keys.AsynqActive(queue), keys.AsynqLease(queue), keys.AsynqPending(queue)}, args...).Slice()
	if err != nil {
		return recoverResult{}, err
	}
	var res recoverResult
	lists := []*[]string{&res.requeued, &res.handed, &res.dropped}
	for i, l := range v {
		items, _ := l.([]any)
		if i >= len(lists) {
			break
		}
		for _, it := range items {
			if s, ok := it.(string); ok {
				*lists[i] = append(*lists[i], s)
			}
		}
	}
	return res, nil
}

// liveTaskIDs returns the ids of the tasks every live asynq server lists as
// running: the fields of each unexpired asynq:workers:{...} hash. reached is
// called once the set of workers hashes has been read: this worker reaches
// the node its own heartbeat writes to (on a cluster, a pass may fail on
// another node without this worker being cut off).
func liveTaskIDs(ctx context.Context, rdb redis.UniversalClient, reached func()) ([]string, error) {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return nil, err
	}
	hashes, err := rdb.ZRangeByScore(ctx, keys.AsynqWorkers, &redis.ZRangeBy{Min: strconv.FormatInt(now.Unix(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, err
	}
	reached()
	if len(hashes) == 0 {
		return nil, nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(hashes))
	for i, h := range hashes {
		cmds[i] = pipe.HKeys(ctx, h)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var ids []string
	for _, c := range cmds {
		ids = append(ids, c.Val()...)
	}
	return ids, nil
}
