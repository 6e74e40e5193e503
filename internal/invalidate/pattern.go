package invalidate

import (
	"context"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/pace"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/redis/go-redis/v9"
)

// PatternOptions say what a pattern invalidation deletes and how fast.
type PatternOptions struct {
	// Pattern is the SCAN MATCH glob ("user:*"). The caller refuses
	// match-everything patterns unless the user confirmed them
	// (tasks.MatchesEverything).
	Pattern string
	// MaxKeysPerSecond caps the keys deleted per second, summed over every
	// master; 0 means no cap.
	MaxKeysPerSecond int
	// Sample is how many of the deleted keys to return in Result.Sample
	// (for the event); 0 returns none.
	Sample int
	// Progress, when set, is called after every batch with the totals so far.
	Progress func(PatternResult)
	// Pacer, when set (or when the Invalidator is Paced), paces the
	// walk by observed latency (package pace); MaxKeysPerSecond still caps
	// it. Its figures are reported in PatternResult.Pace.
	Pacer *pace.Pacer
}

// PatternResult counts what a pattern invalidation did.
type PatternResult struct {
	// Scanned is how many keys matched the pattern.
	Scanned int64 `json:"scanned"`
	// Deleted is how many of them were deleted (a key that expired or was
	// deleted by someone else between SCAN and UNLINK is not counted).
	Deleted int64 `json:"deleted"`
	// Fenced is how many matched a declared cache's key template: keys of
	// caches whose fence was advanced before the walk, so no in-flight warm
	// writes them back.
	Fenced int64 `json:"fenced"`
	// Internal is how many belonged to cachekeeper or to the asynq queue and
	// were left alone.
	Internal int64 `json:"internal,omitempty"`
	// Elapsed is the duration of the walk.
	Elapsed time.Duration `json:"-"`
	// Sample lists up to PatternOptions.Sample matched keys.
	Sample []string `json:"-"`
	// Pace is what the pacer is doing (batch size, rate, observed latency),
	// when the walk is paced.
	Pace *pace.Stats `json:"pace,omitempty"`
}

// Pattern deletes every key matching opts.Pattern, walking the keyspace with
// SCAN (never KEYS) on one node or on every master of a cluster, in batches
// of BatchSize:
//
//   - keys of cachekeeper itself and of the asynq queue are never deleted
//     (keys.Rule; use invalidate_tag for tag sets; the queue is not a
//     cache): a pattern that can only match them is refused, and a broader
//     one skips them during the scan;
//   - before the walk, the fence of every declared cache whose keys the
//     pattern may match (keys.Template.MayMatchGlob) is advanced once
//     (fence.FenceCaches), so that no warm of those caches whose database
//     read began before this invalidation can write a value back, on any
//     key, whether the walk finds the key or not;
//   - then every matching key is deleted with UNLINK (memory reclaimed off
//     the main thread), one command per batch (per hash slot on a
//     cluster): one fence per cache instead of one per key is what lets
//     fenced pattern invalidation run at the speed of a plain one. The
//     price: warms of those caches in flight when the job starts have all
//     their writes refused (counted as fenced writes skipped), not only
//     the matching keys'; a refused write leaves a cache miss, never a
//     stale value.
//
// SCAN may return a key twice and may miss keys created during the walk; a
// retry of the whole job is harmless.
func (v *Invalidator) Pattern(ctx context.Context, opts PatternOptions) (PatternResult, error) {
	if opts.Pattern == "" {
		return PatternResult{}, fmt.Errorf("%w: empty pattern", ErrInvalidRequest)
	}
	rule := v.ruleFor(ctx)
	if err := rule.CheckPattern(opts.Pattern); err != nil {
		return PatternResult{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	var res PatternResult
	start := time.Now()
	fenceCaches := v.cachesMatching(opts.Pattern)
	if err := v.fence.FenceCaches(ctx, fenceCaches); err != nil {
		return res, fmt.Errorf("invalidate pattern %q: %w", opts.Pattern, err)
	}
	pacer := opts.Pacer
	if pacer == nil {
		pacer = v.pacer
	}
	report := func() {
		res.Elapsed = time.Since(start)
		if pacer != nil {
			st := pacer.Stats()
			res.Pace = &st
		}
	}
	_, err := scan.Each(ctx, v.rdb, scan.Options{
		Match:            opts.Pattern,
		Count:            BatchSize,
		BatchSize:        BatchSize,
		MaxKeysPerSecond: opts.MaxKeysPerSecond,
		Rule:             &rule,
		OnInternal:       func(n int) { res.Internal += int64(n); res.Scanned += int64(n) },
		Pacer:            scanPacer(pacer),
	}, func(ctx context.Context, batch []string) error {
		for _, k := range batch {
			if len(fenceCaches) > 0 && v.isCacheKey(k) {
				res.Fenced++
			}
			if len(res.Sample) < opts.Sample {
				res.Sample = append(res.Sample, k)
			}
		}
		res.Scanned += int64(len(batch))
		n, err := v.unlink(ctx, batch)
		res.Deleted += n
		if err != nil {
			return err
		}
		if opts.Progress != nil {
			report()
			opts.Progress(res)
		}
		return nil
	})
	report()
	if err != nil {
		return res, fmt.Errorf("invalidate pattern %q: %w", opts.Pattern, err)
	}
	return res, nil
}

// cachesMatching returns the declared caches whose keys pattern may match,
// sorted.
func (v *Invalidator) cachesMatching(pattern string) []string {
	var out []string
	for _, name := range v.names {
		if v.caches[name].tpl.MayMatchGlob(pattern) {
			out = append(out, name)
		}
	}
	return out
}

// unlink deletes keys with UNLINK: one command on a single server, one per
// hash slot (pipelined) on a cluster.
func (v *Invalidator) unlink(ctx context.Context, keyList []string) (int64, error) {
	groups := redisx.SplitBySlot(v.rdb, keyList)
	if len(groups) == 1 {
		return v.rdb.Unlink(ctx, groups[0]...).Result()
	}
	pipe := v.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.Unlink(ctx, g...)
	}
	_, err := pipe.Exec(ctx)
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, err
}

// scanPacer is p for scan.Options: nil (unpaced) when p is.
func scanPacer(p *pace.Pacer) scan.Pacer {
	if p == nil {
		return nil
	}
	return p
}
