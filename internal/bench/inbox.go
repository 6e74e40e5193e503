package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ScenarioInbox is the inbox scenario's name.
const ScenarioInbox = "inbox"

// InboxOptions configure the inbox scenario. Zero fields take the defaults
// noted.
type InboxOptions struct {
	// Entries is how many jobs each side enqueues per round (default 50,000).
	Entries int
	// Rounds alternate the two sides (default 3); figures are medians.
	Rounds int
	// LatencyRate is the push rate of the latency phase, entries/s (default
	// 1,000), for LatencySeconds (default 2).
	LatencyRate    int
	LatencySeconds int
	// BatchSize and Enqueuers configure the bridge (defaults
	// inbox.DefaultBatchSize, inbox.DefaultEnqueuers).
	BatchSize, Enqueuers int
	Logger               *slog.Logger
}

func (o InboxOptions) withDefaults() (InboxOptions, error) {
	if o.Entries < 0 || o.Rounds < 0 || o.LatencyRate < 0 || o.LatencySeconds < 0 || o.BatchSize < 0 || o.Enqueuers < 0 {
		return o, fmt.Errorf("%w: bench inbox: counts must not be negative", ErrInvalidOptions)
	}
	if o.Entries == 0 {
		o.Entries = 50_000
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.LatencyRate == 0 {
		o.LatencyRate = 1000
	}
	if o.LatencySeconds == 0 {
		o.LatencySeconds = 2
	}
	if o.BatchSize == 0 {
		o.BatchSize = inbox.DefaultBatchSize
	}
	if o.Enqueuers == 0 {
		o.Enqueuers = inbox.DefaultEnqueuers
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Inbox measures the inbox bridge against the Go client in the same run:
//
//   - baseline: Entries cache:invalidate jobs enqueued by tasks.Client from
//     Enqueuers goroutines (jobs/s);
//   - drain: the same jobs as JSON entries LPUSHed by a connection of their
//     own (as a producer in another language would) onto a fresh inbox,
//     then drained by the bridge (inbox.Bridge with inbox.BatchEnqueuer, as
//     the worker runs it): entries/s from the bridge's start until every job
//     is enqueued;
//   - latency: with the bridge running, entries pushed one LPUSH at a time at
//     LatencyRate for LatencySeconds, each timed from the push to the return
//     of its enqueue (p50/p99).
//
// Sides alternate Rounds times; figures are medians. Each round uses fresh
// queue and inbox names, deleted afterwards, so it never touches other data.
func Inbox(ctx context.Context, rdb, producer redis.UniversalClient, opts InboxOptions) (Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	client := tasks.NewClientFromRedis(rdb)
	batch, err := inbox.NewBatchEnqueuer(rdb)
	if err != nil {
		return Result{}, err
	}
	defer batch.Close()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var goRates, drainRates, p50s, p99s []float64
	for round := 0; round < opts.Rounds; round++ {
		suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
		queue := "ckbench_inbox_" + suffix
		key := "ckbench:inbox:" + suffix
		rate, err := goClientRate(ctx, client, queue+"_go", opts)
		if err != nil {
			return Result{}, err
		}
		goRates = append(goRates, rate)
		drain, err := inboxDrain(ctx, rdb, producer, client, batch, key, queue, opts)
		if err != nil {
			return Result{}, err
		}
		drainRates = append(drainRates, drain)
		p50, p99, err := inboxLatency(ctx, rdb, producer, client, batch, key+":lat", queue+"_lat", opts)
		if err != nil {
			return Result{}, err
		}
		p50s, p99s = append(p50s, p50), append(p99s, p99)
		opts.Logger.Info("bench inbox round", slog.Int("round", round+1), slog.Float64("go_client_per_s", round1(rate)),
			slog.Float64("inbox_drain_per_s", round1(drain)), slog.Float64("p50_ms", p50), slog.Float64("p99_ms", p99))
		for _, q := range []string{queue, queue + "_go", queue + "_lat"} {
			_ = insp.DeleteQueue(q, true)
		}
	}
	res := NewResult(ScenarioInbox, "the Go client's Enqueue of the same jobs ("+strconv.Itoa(opts.Enqueuers)+" goroutines)",
		medianOf(drainRates), medianOf(goRates))
	res.Extra = map[string]any{
		"entries": opts.Entries, "rounds": opts.Rounds, "batch_size": opts.BatchSize, "enqueuers": opts.Enqueuers,
		"drain_best_per_s": round(slices.Max(drainRates)), "go_client_best_per_s": round(slices.Max(goRates)),
		"latency_rate": opts.LatencyRate, "latency_p50_ms": medianOf(p50s), "latency_p99_ms": medianOf(p99s),
	}
	return res, nil
}

func inboxJob(i int) *tasks.InvalidateArgs {
	return &tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{strconv.Itoa(i)}}
}

func inboxEntry(i int, queue string) string {
	return `{"kind":"cache:invalidate","args":{"cache":"user","ids":["` + strconv.Itoa(i) + `"]},"options":{"queue":"` + queue + `"}}`
}

func goClientRate(ctx context.Context, c *tasks.Client, queue string, opts InboxOptions) (float64, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, opts.Enqueuers)
	for w := 0; w < opts.Enqueuers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < opts.Entries; i += opts.Enqueuers {
				if _, err := c.Enqueue(ctx, inboxJob(i), tasks.Queue(queue)); err != nil {
					errs <- fmt.Errorf("bench inbox: Go client: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(opts.Entries) / time.Since(start).Seconds(), nil
}

// timedEnqueuer records when each job's enqueue returned, by its id, on
// the plain path (Enqueue) and the batched one (EnqueueBatch), as the
// worker's bridge has them.
type timedEnqueuer struct {
	*tasks.Client
	batch *inbox.BatchEnqueuer
	mu    sync.Mutex
	done  map[string]time.Time
}

func (t *timedEnqueuer) Enqueue(ctx context.Context, p tasks.Payload, opts ...tasks.Option) (*asynq.TaskInfo, error) {
	info, err := t.Client.Enqueue(ctx, p, opts...)
	if err == nil {
		t.record(time.Now(), p)
	}
	return info, err
}

func (t *timedEnqueuer) EnqueueBatch(ctx context.Context, jobs []inbox.BatchJob) []error {
	errs := t.batch.EnqueueBatch(ctx, jobs)
	now := time.Now()
	for i, err := range errs {
		if err == nil {
			t.record(now, jobs[i].Payload)
		}
	}
	return errs
}

func (t *timedEnqueuer) record(at time.Time, p tasks.Payload) {
	if a, ok := p.(*tasks.InvalidateArgs); ok && len(a.IDs) == 1 {
		t.mu.Lock()
		t.done[a.IDs[0]] = at
		t.mu.Unlock()
	}
}

func (t *timedEnqueuer) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.done)
}

func startBridge(ctx context.Context, rdb redis.UniversalClient, enq *timedEnqueuer, key string, opts InboxOptions) (stop func() error, err error) {
	br, err := inbox.New(inbox.Config{Redis: rdb, Enqueuer: enq, Batch: enq, Key: key, BlockTimeout: 50 * time.Millisecond,
		BatchSize: opts.BatchSize, Enqueuers: opts.Enqueuers})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}, nil
}

func waitCount(ctx context.Context, enq *timedEnqueuer, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for enq.count() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench inbox: %d of %d entries enqueued after %s", enq.count(), n, limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func inboxDrain(ctx context.Context, rdb, producer redis.UniversalClient, c *tasks.Client, batch *inbox.BatchEnqueuer, key, queue string, opts InboxOptions) (float64, error) {
	defer producer.Del(context.WithoutCancel(ctx), key)
	for lo := 0; lo < opts.Entries; lo += 1000 {
		pipe := producer.Pipeline()
		for i := lo; i < min(lo+1000, opts.Entries); i++ {
			pipe.LPush(ctx, key, inboxEntry(i, queue))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("bench inbox: push: %w", err)
		}
	}
	enq := &timedEnqueuer{Client: c, batch: batch, done: map[string]time.Time{}}
	start := time.Now()
	stop, err := startBridge(ctx, rdb, enq, key, opts)
	if err != nil {
		return 0, err
	}
	err = waitCount(ctx, enq, opts.Entries, 5*time.Minute)
	d := time.Since(start)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	return float64(opts.Entries) / d.Seconds(), nil
}

func inboxLatency(ctx context.Context, rdb, producer redis.UniversalClient, c *tasks.Client, batch *inbox.BatchEnqueuer, key, queue string, opts InboxOptions) (p50, p99 float64, err error) {
	defer producer.Del(context.WithoutCancel(ctx), key)
	enq := &timedEnqueuer{Client: c, batch: batch, done: map[string]time.Time{}}
	stop, err := startBridge(ctx, rdb, enq, key, opts)
	if err != nil {
		return 0, 0, err
	}
	n := opts.LatencyRate * opts.LatencySeconds
	pushed := make([]time.Time, n)
	interval := time.Second / time.Duration(opts.LatencyRate)
	next := time.Now()
	for i := 0; i < n && err == nil; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		pushed[i] = time.Now()
		err = producer.LPush(ctx, key, inboxEntry(i, queue)).Err()
	}
	if err == nil {
		err = waitCount(ctx, enq, n, time.Minute)
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		lat = append(lat, enq.done[strconv.Itoa(i)].Sub(pushed[i]))
	}
	slices.Sort(lat)
	return pct(lat, 50), pct(lat, 99), nil
}
