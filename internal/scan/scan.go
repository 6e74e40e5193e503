// Package scan walks the keyspace without blocking Redis: SCAN with MATCH,
// COUNT and an optional TYPE, never KEYS, on one node or on every master of
// a Redis Cluster, delivering the keys in batches to a callback, with an
// optional rate cap in keys per second and optional pacing by observed
// latency (package pace).
//
// SCAN guarantees that a key present during the whole walk is delivered at
// least once; a key may be delivered more than once (the table may be
// rehashed between calls) and a key created or deleted during the walk may or
// may not be. Callbacks must therefore be idempotent, which the jobs that use
// this package are anyway (at-least-once delivery).
//
// Every batch holds keys of one node only. On a cluster, keys of one batch
// still belong to different hash slots: pipelines of single-key commands are
// fine, multi-key commands (DEL k1 k2, one Lua script over several keys) must
// be grouped with redisx.SplitBySlot first.
//
// A walk never delivers cachekeeper's or asynq's own keys (keys.Rule): the
// rule of the job's guard (keys.WithGuard) when there is one, else
// keys.DefaultRule; the keys left out are counted in the guard and given to
// Options.OnInternal. Only cachekeeper's own maintenance, which walks its
// own keys on purpose, sets Options.Internal.
package scan

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	ikeys "github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
)

// Defaults used when an Options field is zero.
const (
	DefaultCount     = 1000
	DefaultBatchSize = 1000
)

// Options configure a walk. The zero value walks every key of every type in
// batches of DefaultBatchSize; a caller almost always sets Match.
type Options struct {
	// Match is the SCAN MATCH glob, for example "session:*". Empty means
	// every key.
	Match string
	// Count is the SCAN COUNT hint: how many slots of the keyspace one SCAN
	// call visits (default DefaultCount). Larger is faster and keeps Redis
	// busy longer per call; each call stays short whatever the value.
	Count int64
	// Type keeps only keys of this Redis type ("zset", "hash", "set",
	// "string", "list", "stream"), filtered by the server (SCAN ... TYPE,
	// Redis 6.0 or later).
	Type string
	// BatchSize is the largest number of keys per callback (default
	// DefaultBatchSize). A node's last batch may be smaller.
	BatchSize int
	// MaxKeysPerSecond caps how fast keys are delivered, summed over every
	// node; 0 means no cap.
	MaxKeysPerSecond int
	// Internal delivers cachekeeper's and asynq's own keys too. Only
	// cachekeeper's maintenance of its own keys (tag sets) sets it; a walk
	// driven by a job's pattern never does.
	Internal bool
	// Rule says which keys are internal; zero means the rule of ctx's guard
	// (keys.RuleFrom).
	Rule *ikeys.Rule
	// OnInternal, when set, is told how many internal keys each SCAN reply
	// held (left out of the batches). It may be called concurrently when
	// Concurrency is above 1.
	OnInternal func(n int)
	// Pacer, when set, paces the walk by what Redis is doing (see package
	// pace): each batch carries the pacer's current batch size (at most
	// BatchSize), SCAN's COUNT follows it, the pacer's pause is kept before
	// each batch and the callback's duration is fed back to it. The caller
	// creates and stops it, and may read its Stats for progress. Nil:
	// unpaced.
	Pacer Pacer
	// Concurrency is how many cluster masters are walked at once (default
	// 1: one master after another, and fn is never called concurrently).
	// Above 1, fn must be safe for concurrent use. It has no effect on a
	// single node.
	Concurrency int
}

// Pacer paces a walk (package pace's *Pacer is one; a nil *Pacer does
// nothing): Batch is the size of the next batch (0: BatchSize), Wait blocks
// until it may start, Observe is told how many keys it carried and how long
// it took. Every Wait that returns nil is followed by one Observe.
type Pacer interface {
	Batch() int
	Wait(ctx context.Context) error
	Observe(keys int, took time.Duration)
}

// unpaced is the Pacer of a walk without one.
type unpaced struct{}

func (unpaced) Batch() int                     { return 0 }
func (unpaced) Wait(ctx context.Context) error { return ctx.Err() }
func (unpaced) Observe(_ int, _ time.Duration) {}

// BatchFunc receives one batch of keys, all from one node. The slice is
// reused after fn returns: copy it to keep it. An error stops the walk and is
// returned by Each.
type BatchFunc func(ctx context.Context, keys []string) error

// Each walks the keys that opts selects and calls fn with batches of them. It
// returns how many keys it delivered. On a *redis.ClusterClient it walks
// every master (replicas hold the same keys); on any other client, the one
// node it talks to. Each stops at the first error, from Redis, from fn or
// from ctx.
func Each(ctx context.Context, rdb redis.UniversalClient, opts Options, fn BatchFunc) (int64, error) {
	if rdb == nil {
		return 0, errors.New("scan: nil Redis client")
	}
	if fn == nil {
		return 0, errors.New("scan: nil batch callback")
	}
	if err := opts.validate(); err != nil {
		return 0, err
	}
	opts = opts.withDefaults()
	if opts.Pacer == nil {
		opts.Pacer = unpaced{}
	}
	w := &walker{opts: opts, fn: fn, guard: ikeys.GuardFrom(ctx)}
	if !opts.Internal {
		rule := ikeys.RuleFrom(ctx)
		if opts.Rule != nil {
			rule = *opts.Rule
		}
		w.rule = &rule
	}
	if opts.MaxKeysPerSecond > 0 {
		// The burst must cover the largest batch, or WaitN could never succeed.
		burst := max(opts.MaxKeysPerSecond, opts.BatchSize)
		w.limiter = rate.NewLimiter(rate.Limit(opts.MaxKeysPerSecond), burst)
		// The first batch must not go out at full burst either.
		w.limiter.AllowN(time.Now(), burst)
	}
	cluster, ok := rdb.(*redis.ClusterClient)
	if !ok {
		err := w.node(ctx, rdb, "")
		return w.total(), err
	}
	masters, err := Masters(ctx, cluster)
	if err != nil {
		return 0, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for _, m := range masters {
		g.Go(func() error { return w.node(gctx, m, m.Options().Addr) })
	}
	err = g.Wait()
	return w.total(), err
}

// Masters returns the client of every master of a cluster, sorted by
// address, from the client's current view of the cluster.
func Masters(ctx context.Context, cluster *redis.ClusterClient) ([]*redis.Client, error) {
	var mu sync.Mutex
	var masters []*redis.Client
	err := cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters = append(masters, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan: list cluster masters: %w", err)
	}
	sort.Slice(masters, func(i, j int) bool { return masters[i].Options().Addr < masters[j].Options().Addr })
	return masters, nil
}

func (o Options) validate() error {
	switch {
	case o.Count < 0:
		return fmt.Errorf("scan: Count %d must be 0 (default %d) or positive", o.Count, DefaultCount)
	case o.BatchSize < 0:
		return fmt.Errorf("scan: BatchSize %d must be 0 (default %d) or positive", o.BatchSize, DefaultBatchSize)
	case o.MaxKeysPerSecond < 0:
		return fmt.Errorf("scan: MaxKeysPerSecond %d must be 0 (no cap) or positive", o.MaxKeysPerSecond)
	case o.Concurrency < 0:
		return fmt.Errorf("scan: Concurrency %d must be 0 (default 1) or positive", o.Concurrency)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Count == 0 {
		o.Count = DefaultCount
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	// With a low cap, a huge COUNT would only make each step burstier.
	// With a low cap, big steps and batches would only make the pace
	// burstier: keep each to about one second's worth of keys.
	if o.MaxKeysPerSecond > 0 {
		o.Count = min(o.Count, int64(o.MaxKeysPerSecond))
		o.BatchSize = min(o.BatchSize, o.MaxKeysPerSecond)
	}
	return o
}

type walker struct {
	opts    Options
	fn      BatchFunc
	limiter *rate.Limiter
	// rule, when set, keeps internal keys out of the batches.
	rule  *ikeys.Rule
	guard *ikeys.Guard

	mu        sync.Mutex
	delivered int64
}

func (w *walker) total() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.delivered
}

// page is one SCAN reply, or the error that ended the walk of a node.
type page struct {
	keys []string
	err  error
}

// node walks one node from cursor 0 until SCAN returns cursor 0 again. The
// next SCAN is sent while fn handles the current batch, so that the server
// never waits for the client between the two.
func (w *walker) node(ctx context.Context, c redis.Cmdable, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan page, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pages)
		w.scanPages(ctx, c, addr, pages)
	}()

	buf := make([]string, 0, w.opts.BatchSize)
	size := w.batchSize()
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		keys := w.protect(p.keys)
		for len(keys) > 0 {
			n := min(size-len(buf), len(keys))
			buf = append(buf, keys[:n]...)
			keys = keys[n:]
			if len(buf) >= size {
				if err := w.deliver(ctx, buf); err != nil {
					return err
				}
				buf = buf[:0]
				size = w.batchSize()
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(buf) > 0 {
		return w.deliver(ctx, buf)
	}
	return nil
}

// scanPages sends every SCAN reply of one node to pages, then returns; an
// error is sent as the last page.
func (w *walker) scanPages(ctx context.Context, c redis.Cmdable, addr string, pages chan<- page) {
	where := ""
	if addr != "" {
		where = " on " + addr
	}
	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return
		}
		count := w.opts.Count
		if n := w.opts.Pacer.Batch(); n > 0 {
			// One SCAN call holds Redis in proportion to COUNT, like a batch.
			count = min(count, int64(min(n, w.opts.BatchSize)))
		}
		var cmd *redis.ScanCmd
		if w.opts.Type != "" {
			cmd = c.ScanType(ctx, cursor, w.opts.Match, count, w.opts.Type)
		} else {
			cmd = c.Scan(ctx, cursor, w.opts.Match, count)
		}
		keys, next, err := cmd.Result()
		p := page{keys: keys}
		if err != nil {
			p = page{err: fmt.Errorf("scan %q%s: %w", w.opts.Match, where, err)}
		}
		if len(p.keys) > 0 || p.err != nil {
			select {
			case pages <- p:
			case <-ctx.Done():
				return
			}
		}
		if err != nil || next == 0 {
			return
		}
		cursor = next
	}
}

// protect leaves internal keys out of a SCAN reply and counts them.
func (w *walker) protect(page []string) []string {
	if w.rule == nil {
		return page
	}
	kept, skipped := w.rule.Split(page)
	if skipped > 0 {
		w.guard.Skip(skipped)
		if w.opts.OnInternal != nil {
			w.opts.OnInternal(skipped)
		}
	}
	return kept
}

// batchSize is the size of the next batch: the pacer's, at most BatchSize.
func (w *walker) batchSize() int {
	if n := w.opts.Pacer.Batch(); n > 0 {
		return min(n, w.opts.BatchSize)
	}
	return w.opts.BatchSize
}

func (w *walker) deliver(ctx context.Context, keys []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.limiter != nil {
		if err := w.limiter.WaitN(ctx, len(keys)); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("scan: rate cap: %w", err)
		}
	}
	if err := w.opts.Pacer.Wait(ctx); err != nil {
		return err
	}
	start := time.Now()
	err := w.fn(ctx, keys)
	w.opts.Pacer.Observe(len(keys), time.Since(start))
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.delivered += int64(len(keys))
	w.mu.Unlock()
	return nil
}
