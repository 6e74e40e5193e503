package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/coalesce"
	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// ScenarioInbox is the inbox scenario's name.
const ScenarioInbox = "inbox"

// InboxOptions configure the inbox scenario. Zero fields take the defaults
// noted.
type InboxOptions struct {
	// Entries is how many single-id invalidations each side sends per round
	// (default 20,000).
	Entries int
	// Rounds alternate the two sides (default 3); figures are medians.
	Rounds int
	// LatencyRate is the push rate of the latency phase, entries/s (default
	// 5,000), for LatencySeconds (default 2).
	LatencyRate    int
	LatencySeconds int
	// BatchSize and Enqueuers configure the bridge (defaults
	// inbox.DefaultBatchSize, inbox.DefaultEnqueuers); Enqueuers is also the
	// Go client's goroutines.
	BatchSize, Enqueuers int
	// Window is invalidate.coalesce_window (0: none; the CLI's default is
	// the configuration's).
	Window time.Duration
	Logger *slog.Logger
}

func (o InboxOptions) withDefaults() (InboxOptions, error) {
	if o.Entries < 0 || o.Rounds < 0 || o.LatencyRate < 0 || o.LatencySeconds < 0 || o.BatchSize < 0 || o.Enqueuers < 0 || o.Window < 0 {
		return o, fmt.Errorf("%w: bench inbox: counts must not be negative", ErrInvalidOptions)
	}
	if o.Entries == 0 {
		o.Entries = 20_000
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.LatencyRate == 0 {
		o.LatencyRate = 5000
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

// Inbox measures single-id invalidations to their effect, the cached key
// deleted, with the worker's own parts (the inbox bridge and the coalesced
// invalidation of internal/coalesce and internal/invalidate) on fresh key
// names:
//
//   - Go client: Entries ids invalidated by tasks.Client.Invalidate, one id
//     per call, from Enqueuers goroutines: ids/s from the first call until
//     every key is deleted (the baseline);
//   - inbox: the same number of single-id cache:invalidate entries LPUSHed
//     in pipelines of 1,000 by a connection of their own (as redis-py
//     would): ids/s from the first push until every key is deleted;
//   - latency: one LPUSH at a time at LatencyRate for LatencySeconds, each
//     timed from its push to the return of the fenced delete of its key
//     (p50/p99).
//
// Sides alternate Rounds times; figures are medians. Each round uses a
// fresh key prefix, cache name and inbox, all deleted afterwards, so it
// never touches other data.
func Inbox(ctx context.Context, rdb, producer redis.UniversalClient, opts InboxOptions) (Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	var goRates, inboxRates, p50s, p99s []float64
	for round := 0; round < opts.Rounds; round++ {
		e, err := startInvEnv(ctx, rdb, producer, opts)
		if err != nil {
			return Result{}, err
		}
		var goRate, inboxRate float64
		sides := []func() error{
			func() (err error) { goRate, err = e.goClient(ctx); return err },
			func() (err error) { inboxRate, err = e.inboxPush(ctx); return err },
		}
		if round%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			if err == nil {
				err = side()
			}
		}
		var p50, p99 float64
		if err == nil {
			p50, p99, err = e.latency(ctx)
		}
		if cerr := e.close(ctx); err == nil {
			err = cerr
		}
		if err != nil {
			return Result{}, err
		}
		goRates, inboxRates = append(goRates, goRate), append(inboxRates, inboxRate)
		p50s, p99s = append(p50s, p50), append(p99s, p99)
		opts.Logger.Info("bench inbox round", slog.Int("round", round+1), slog.Float64("go_client_ids_per_s", round1(goRate)),
			slog.Float64("inbox_ids_per_s", round1(inboxRate)), slog.Float64("p50_ms", p50), slog.Float64("p99_ms", p99))
	}
	res := NewResult(ScenarioInbox, "the Go client's Invalidate of one id per call ("+strconv.Itoa(opts.Enqueuers)+" goroutines), to the key deleted",
		medianOf(inboxRates), medianOf(goRates))
	res.Extra = map[string]any{
		"entries": opts.Entries, "rounds": opts.Rounds, "batch_size": opts.BatchSize, "enqueuers": opts.Enqueuers,
		"coalesce_window":  opts.Window.String(),
		"inbox_best_per_s": round(slices.Max(inboxRates)), "go_client_best_per_s": round(slices.Max(goRates)),
		"latency_rate": opts.LatencyRate, "latency_p50_ms": medianOf(p50s), "latency_p99_ms": medianOf(p99s),
	}
	return res, nil
}

// invEnv is one round's worker side: a bridge and a coalesced-invalidation
// drainer on a fresh key prefix, recording when each id's key was deleted.
type invEnv struct {
	rdb, producer redis.UniversalClient
	opts          InboxOptions
	prefix        string // every key of the round starts with it
	cache, inbox  string
	client        *tasks.Client
	stop          func() error

	mu      sync.Mutex
	deleted map[string]time.Time
}

func startInvEnv(ctx context.Context, rdb, producer redis.UniversalClient, opts InboxOptions) (*invEnv, error) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	e := &invEnv{rdb: rdb, producer: producer, opts: opts, prefix: "ckbench:" + suffix + ":",
		cache: "ckbench" + suffix, deleted: map[string]time.Time{}}
	k, err := keys.New(e.prefix + "ck:")
	if err != nil {
		return nil, err
	}
	e.inbox = k.Inbox()
	e.client = tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix(e.prefix+"ck:"))
	inv, err := invalidate.New(rdb, k, time.Second, map[string]invalidate.Cache{e.cache: {Key: e.prefix + "user:{id}"}})
	if err != nil {
		return nil, err
	}
	batch := inv.Batch(invalidate.Coalesced{OnBatch: func(_ string, ids []string, _ int) {
		now := time.Now()
		e.mu.Lock()
		for _, id := range ids {
			e.deleted[id] = now
		}
		e.mu.Unlock()
	}})
	d := &coalesce.Drainer{Redis: rdb, Set: func(c string) coalesce.Set { return coalesce.InvalidateSet(k, c) },
		Run: batch, What: "invalidations", Lease: 5 * time.Second, MaxSize: config.Default().Invalidate.CoalesceMaxSize}
	if err := d.Init(); err != nil {
		return nil, err
	}
	br, err := inbox.New(inbox.Config{Redis: rdb, NewBlocking: blockingClient(rdb), Enqueuer: e.client, Key: e.inbox,
		BatchSize: opts.BatchSize, Enqueuers: opts.Enqueuers})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- br.Run(ctx) }()
	go func() {
		done <- d.Wait(ctx, []string{e.cache}, coalesce.WaitOptions{NewBlocking: blockingClient(rdb), Window: opts.Window})
	}()
	e.stop = func() error {
		cancel()
		return errors.Join(<-done, <-done)
	}
	return e, nil
}

// blockingClient opens a client of its own like rdb, for blocking commands.
func blockingClient(rdb redis.UniversalClient) func() (redis.UniversalClient, error) {
	return func() (redis.UniversalClient, error) {
		switch c := rdb.(type) {
		case *redis.Client:
			return redis.NewClient(c.Options()), nil
		case *redis.ClusterClient:
			return redis.NewClusterClient(c.Options()), nil
		}
		return nil, fmt.Errorf("bench inbox: unsupported Redis client %T", rdb)
	}
}

func (e *invEnv) key(id string) string { return e.prefix + "user:" + id }

// cacheKeys writes the keys of ids tag0..tag(n-1), untimed.
func (e *invEnv) cacheKeys(ctx context.Context, tag string, n int) error {
	for lo := 0; lo < n; lo += 1000 {
		pipe := e.rdb.Pipeline()
		for i := lo; i < min(lo+1000, n); i++ {
			pipe.Set(ctx, e.key(tag+strconv.Itoa(i)), "1", time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench inbox: write the cached keys: %w", err)
		}
	}
	return nil
}

func (e *invEnv) entry(id string) string {
	return `{"kind":"cache:invalidate","args":{"cache":"` + e.cache + `","ids":["` + id + `"]}}`
}

// waitDeleted waits until the keys of tag0..tag(n-1) are deleted (recorded
// by the drainer, then checked on Redis) and returns when the last one was.
func (e *invEnv) waitDeleted(ctx context.Context, tag string, n int, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	var last time.Time
	for i := 0; i < n; {
		e.mu.Lock()
		at, ok := e.deleted[tag+strconv.Itoa(i)]
		e.mu.Unlock()
		if ok {
			if at.After(last) {
				last = at
			}
			i++
			continue
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("bench inbox: %d of %d keys deleted after %s", i, n, limit)
		}
		if err := ctx.Err(); err != nil {
			return last, err
		}
		time.Sleep(time.Millisecond)
	}
	for lo := 0; lo < n; lo += 1000 {
		names := make([]string, 0, 1000)
		for i := lo; i < min(lo+1000, n); i++ {
			names = append(names, e.key(tag+strconv.Itoa(i)))
		}
		if left := e.rdb.Exists(ctx, names...).Val(); left != 0 {
			return last, fmt.Errorf("bench inbox: %d keys reported deleted are still cached", left)
		}
	}
	return last, nil
}

func (e *invEnv) goClient(ctx context.Context) (float64, error) {
	n := e.opts.Entries
	if err := e.cacheKeys(ctx, "g", n); err != nil {
		return 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, e.opts.Enqueuers)
	for w := 0; w < e.opts.Enqueuers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += e.opts.Enqueuers {
				if err := e.client.Invalidate(ctx, e.cache, "g"+strconv.Itoa(i)); err != nil {
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
	last, err := e.waitDeleted(ctx, "g", n, 5*time.Minute)
	if err != nil {
		return 0, err
	}
	return float64(n) / last.Sub(start).Seconds(), nil
}

func (e *invEnv) inboxPush(ctx context.Context) (float64, error) {
	n := e.opts.Entries
	if err := e.cacheKeys(ctx, "i", n); err != nil {
		return 0, err
	}
	start := time.Now()
	for lo := 0; lo < n; lo += 1000 {
		pipe := e.producer.Pipeline()
		for i := lo; i < min(lo+1000, n); i++ {
			pipe.LPush(ctx, e.inbox, e.entry("i"+strconv.Itoa(i)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("bench inbox: push: %w", err)
		}
	}
	last, err := e.waitDeleted(ctx, "i", n, 5*time.Minute)
	if err != nil {
		return 0, err
	}
	return float64(n) / last.Sub(start).Seconds(), nil
}

func (e *invEnv) latency(ctx context.Context) (p50, p99 float64, err error) {
	n := e.opts.LatencyRate * e.opts.LatencySeconds
	if err := e.cacheKeys(ctx, "l", n); err != nil {
		return 0, 0, err
	}
	pushed := make([]time.Time, n)
	interval := time.Second / time.Duration(e.opts.LatencyRate)
	next := time.Now()
	for i := 0; i < n && err == nil; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		pushed[i] = time.Now()
		err = e.producer.LPush(ctx, e.inbox, e.entry("l"+strconv.Itoa(i))).Err()
	}
	if err == nil {
		_, err = e.waitDeleted(ctx, "l", n, time.Minute)
	}
	if err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, 0, n)
	e.mu.Lock()
	for i := range n {
		lat = append(lat, e.deleted["l"+strconv.Itoa(i)].Sub(pushed[i]))
	}
	e.mu.Unlock()
	slices.Sort(lat)
	return pct(lat, 50), pct(lat, 99), nil
}

// close stops the round's bridge and drainer and deletes every key of the
// round (fences, pending sets, the inbox lists).
func (e *invEnv) close(ctx context.Context) error {
	err := e.stop()
	ctx = context.WithoutCancel(ctx)
	var names []string
	iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		names = append(names, iter.Val())
		if len(names) == 1000 {
			e.rdb.Unlink(ctx, names...)
			names = names[:0]
		}
	}
	if len(names) > 0 {
		e.rdb.Unlink(ctx, names...)
	}
	return errors.Join(err, iter.Err())
}
