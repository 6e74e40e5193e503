// Package coalesce merges requests that name single ids of a cache into
// batches: a producer adds ids to the cache's pending set in Redis (Add,
// one script call, no job), and a worker takes them, up to MaxSize at a
// time, oldest request first, and runs one batch per take (Drainer). Warms
// (tasks.Client.WarmCache) run each batch as one cache:warm job;
// invalidations (tasks.Client.Invalidate) run it as one fenced invalidation.
//
// Nothing acknowledged is lost and no request is dropped before a read that
// follows it:
//   - ids leave the set only after their batch ran (was enqueued, or its
//     keys deleted); a crash or a failure in between leaves them pending for
//     the next pass (at worst they run twice, which is harmless: every
//     batch is idempotent);
//   - the acknowledgement removes an id only if its score is still the one
//     the drainer read: an id asked for again meanwhile has a new score (the
//     request counter only grows, and is raised above the pending scores if
//     it was lost), so it stays for a later batch, which begins after that
//     request.
//
// A lease (Set.Lease, renewed by every batch, released when the set is
// drained, on a failure and on shutdown) lets one worker of a fleet drain a
// cache at a time, so that replicas do not run the same ids twice.
//
// With a wake list (Set.Wake), Add also pushes a token onto it (at most one
// waits there), and Drainer.Wait blocks on the list instead of polling:
// a lone request is handled within Window, and an idle worker sends one
// command per cache every Fallback.
package coalesce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Set names the keys of one cache's pending ids; all share a cluster slot.
type Set struct {
	Pending, Seq, Lease string
	// Wake, when set, is the list Add pushes a token onto.
	Wake string
}

// WarmSet is the set of cache's coalesced warms (no wake list: the worker
// takes them every warm.coalesce_interval).
func WarmSet(k keys.Keys, cache string) Set {
	return Set{Pending: k.WarmPending(cache), Seq: k.WarmSeq(cache), Lease: k.WarmDrain(cache)}
}

// InvalidateSet is the set of cache's coalesced invalidations.
func InvalidateSet(k keys.Keys, cache string) Set {
	return Set{Pending: k.InvalidatePending(cache), Seq: k.InvalidateSeq(cache),
		Lease: k.InvalidateDrain(cache), Wake: k.InvalidateWake(cache)}
}

// MaxAddIDs is the most ids one Add takes: the script passes 2 values per
// id to one ZADD through Lua's unpack, which fails past about 8,000 values.
const MaxAddIDs = 1000

// Add adds ids to s's pending set (and a token to its wake list), in one
// script call.
func Add(ctx context.Context, rdb redis.Scripter, s Set, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > MaxAddIDs {
		return fmt.Errorf("coalesce: at most %d ids per call, got %d", MaxAddIDs, len(ids))
	}
	k := []string{s.Pending, s.Seq}
	if s.Wake != "" {
		k = append(k, s.Wake)
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return redisx.WarmPendingAdd.Run(ctx, rdb, k, args...).Err()
}

// Batch runs one batch of ids of cache. It must be idempotent: a crash
// before the acknowledgement runs the ids again.
type Batch func(ctx context.Context, cache string, ids []string) error

// Defaults of a Drainer's fields.
const (
	// DefaultMaxBatches bounds one pass over one cache, so that a cache
	// whose producers outpace the worker does not starve the others.
	DefaultMaxBatches = 100
	// cleanupTimeout bounds an acknowledgement or a lease release made
	// after the context ended.
	cleanupTimeout = 5 * time.Second
	// failureLogEvery is how often a cache that keeps failing is logged again.
	failureLogEvery = time.Minute
)

// Drainer takes the pending ids of caches and runs them in batches.
type Drainer struct {
	// Redis holds the sets (required).
	Redis redis.UniversalClient
	// Set returns the keys of a cache's set (required).
	Set func(cache string) Set
	// Run runs one batch (required).
	Run Batch
	// What names the requests in log lines ("warms", "invalidations").
	What string
	// Lease is how long a drainer keeps the right to drain a cache without
	// taking a batch; it must exceed the time one batch can take (required).
	Lease time.Duration
	// MaxSize is the most ids of a batch (required, at most MaxAddIDs*8).
	MaxSize int
	// MaxBatches bounds one pass over one cache (default DefaultMaxBatches).
	MaxBatches int
	// Logger (default: discard).
	Logger *slog.Logger
	// Owner names this drainer in the lease (default: random).
	Owner string

	owner string
	mu    sync.Mutex // guards failing in Wait
	// failing holds, per failing cache, when its failure was last logged.
	failing map[string]time.Time
}

// Init checks d's fields and gives it its lease owner id.
func (d *Drainer) Init() error {
	switch {
	case d.Redis == nil || d.Set == nil || d.Run == nil:
		return errors.New("coalesce: Drainer needs Redis, Set and Run")
	case d.Lease <= 0:
		return errors.New("coalesce: Drainer.Lease must be positive")
	case d.MaxSize < 1:
		return fmt.Errorf("coalesce: Drainer.MaxSize %d must be at least 1", d.MaxSize)
	}
	if d.MaxBatches == 0 {
		d.MaxBatches = DefaultMaxBatches
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.What == "" {
		d.What = "requests"
	}
	d.owner = d.Owner
	if d.owner == "" {
		owner := make([]byte, 8)
		if _, err := rand.Read(owner); err != nil {
			return fmt.Errorf("coalesce: lease owner: %w", err)
		}
		d.owner = hex.EncodeToString(owner)
	}
	d.failing = map[string]time.Time{}
	return nil
}

// ErrLeased says another drainer holds the cache's lease.
var ErrLeased = errors.New("coalesce: another worker drains this cache")

// Drain runs the pending ids of cache, a batch at a time, until none is
// left, another drainer holds the lease (ErrLeased, with what it ran), or
// MaxBatches batches went. It returns how many ids it ran and whether it
// stopped at MaxBatches with ids left.
func (d *Drainer) Drain(ctx context.Context, cache string) (n int, more bool, err error) {
	s := d.Set(cache)
	k := []string{s.Pending, s.Lease}
	for range d.MaxBatches {
		vals, err := redisx.WarmDrainTake.Run(ctx, d.Redis, k, d.owner, d.Lease.Milliseconds(), d.MaxSize).StringSlice()
		if errors.Is(err, redis.Nil) {
			return n, false, ErrLeased
		}
		if err != nil {
			return n, false, fmt.Errorf("take pending ids: %w", err)
		}
		if len(vals) < 2 {
			return n, false, nil
		}
		ids := make([]string, 0, len(vals)/2)
		for i := 0; i+1 < len(vals); i += 2 {
			if strings.TrimSpace(vals[i]) != "" { // Add's callers never add one; another writer might
				ids = append(ids, vals[i])
			}
		}
		if len(ids) > 0 {
			if err := d.Run(ctx, cache, ids); err != nil {
				d.Release(ctx, cache) // another worker may have better luck
				return n, false, fmt.Errorf("run %d coalesced ids: %w", len(ids), err)
			}
		}
		// The batch ran: acknowledge it even if ctx ended meanwhile, or its
		// ids would run again.
		done := len(vals)/2 < d.MaxSize
		release := "0"
		if done {
			release = "1"
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		args := make([]any, 0, 2+len(vals))
		args = append(args, d.owner, release)
		for _, v := range vals {
			args = append(args, v)
		}
		err = redisx.WarmDrainAck.Run(actx, d.Redis, k, args...).Err()
		cancel()
		if err != nil {
			return n, false, fmt.Errorf("acknowledge %d ids that ran: %w", len(ids), err)
		}
		n += len(ids)
		if done || ctx.Err() != nil {
			return n, false, nil
		}
	}
	return n, true, nil
}

// DrainAll drains each cache once. A failure leaves the ids pending for the
// next pass; it is logged when a cache starts failing (then at most once per
// minute) and when it recovers.
func (d *Drainer) DrainAll(ctx context.Context, caches []string) {
	for _, cache := range caches {
		_, _, err := d.Drain(ctx, cache)
		if ctx.Err() != nil {
			return
		}
		d.report(ctx, cache, err)
	}
}

// report logs a cache starting or stopping to fail.
func (d *Drainer) report(ctx context.Context, cache string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if errors.Is(err, ErrLeased) {
		err = nil
	}
	last, wasFailing := d.failing[cache]
	switch {
	case err == nil && wasFailing:
		delete(d.failing, cache)
		d.Logger.LogAttrs(ctx, slog.LevelInfo, "coalesced "+d.What+": running again", slog.String("cache", cache))
	case err != nil && (!wasFailing || time.Since(last) >= failureLogEvery):
		d.failing[cache] = time.Now()
		d.Logger.LogAttrs(ctx, slog.LevelWarn, "coalesced "+d.What+": cannot run them; the ids stay pending and are tried again",
			slog.String("cache", cache), slog.String("error", err.Error()))
	}
}

// Failing returns the caches whose last pass failed.
func (d *Drainer) Failing() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.failing))
	for c := range d.failing {
		out = append(out, c)
	}
	return out
}

// Release gives up this drainer's lease on cache, if it holds it.
func (d *Drainer) Release(ctx context.Context, cache string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := redisx.WarmDrainRelease.Run(rctx, d.Redis, []string{d.Set(cache).Lease}, d.owner).Err(); err != nil {
		d.Logger.LogAttrs(ctx, slog.LevelDebug, "coalesced "+d.What+": release the lease", slog.String("cache", cache), slog.String("error", err.Error()))
	}
}

// ReleaseAll releases the leases of caches.
func (d *Drainer) ReleaseAll(ctx context.Context, caches []string) {
	for _, cache := range caches {
		d.Release(ctx, cache)
	}
}
