package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Scenario names of Invalidate.
// benchCache names the cache the fenced scenarios declare; its cache fence
// is deleted afterwards with the keys.
const benchCache = "ckbench"

const (
	ScenarioInvalidatePattern       = "invalidate_pattern"
	ScenarioInvalidatePatternFenced = "invalidate_pattern_fenced"
)

// InvalidateOptions configure the invalidate scenarios. Zero fields take
// the defaults noted.
type InvalidateOptions struct {
	// Keys is how many keys each cachekeeper run deletes (default 200,000).
	Keys int
	// BaselineKeys is how many keys the one-key-per-round-trip baseline
	// deletes (default min(Keys, 20,000): it is slow, and a rate needs no
	// more).
	BaselineKeys int
	// Rounds is how many times each variant runs (default 3); rates are
	// medians over the rounds.
	Rounds int
	// Prefix starts every key the scenario writes (default "ckbench:inv:");
	// they, and the fences of the fenced variant, are deleted before and
	// after. It must not start with cachekeeper's key prefix, whose keys
	// pattern invalidation never deletes.
	Prefix string
}

func (o InvalidateOptions) withDefaults() (InvalidateOptions, error) {
	if o.Keys < 0 || o.BaselineKeys < 0 || o.Rounds < 0 {
		return o, fmt.Errorf("%w: bench invalidate: --keys, --baseline-keys and --rounds must not be negative", ErrInvalidOptions)
	}
	if o.Keys == 0 {
		o.Keys = 200_000
	}
	if o.BaselineKeys == 0 {
		o.BaselineKeys = min(o.Keys, 20_000)
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Prefix == "" {
		o.Prefix = "ckbench:inv:"
	}
	if keys.Default().Internal(o.Prefix) {
		return o, fmt.Errorf("%w: bench invalidate: prefix %q is cachekeeper's own; pattern invalidation never deletes such keys", ErrInvalidOptions, o.Prefix)
	}
	return o, nil
}

// Invalidate measures pattern invalidation (cache:invalidate_pattern) of
// Keys keys against a baseline that deletes one key per round trip (SCAN,
// then DEL of each key), on fresh copies of the same data in the same run:
//
//   - invalidate_pattern: keys of no declared cache, deleted with UNLINK,
//     one command per batch of 1,000 keys;
//   - invalidate_pattern_fenced: keys shaped like a declared cache's keys,
//     whose cache fence is advanced before the walk (fence.FenceCaches) so no
//     in-flight warm writes them back; this is what a pattern over cached
//     hashes costs.
//
// Both run the code the worker's handler runs (invalidate.Invalidator.
// Pattern, with the handler's event sample and progress callback). Each
// key is a three-field hash like a cached row. Variants take turns, Rounds
// times, each on a keyspace holding only its own keys; rates are keys per
// second, medians of the rounds (Extra has the best). Invalidate writes
// only keys under opts.Prefix (and their fences) and deletes them before
// and after; run it on a server of its own.
func Invalidate(ctx context.Context, rdb redis.UniversalClient, opts InvalidateOptions) ([]Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	k := keys.Default()
	fencesMatch := k.FencesOf(opts.Prefix) // "cachekeeper:fence:{ckbench:inv:*"
	cleanup := func(ctx context.Context) error {
		for _, m := range []string{opts.Prefix + "*", fencesMatch, k.CacheFence(benchCache, ""), k.CacheFence(benchCache, "*")} {
			if err := unlinkMatching(ctx, rdb, m); err != nil {
				return err
			}
		}
		return nil
	}
	defer func() { _ = cleanup(context.WithoutCancel(ctx)) }()
	if err := cleanup(ctx); err != nil {
		return nil, err
	}

	var last invalidate.PatternResult
	ours := func(fenced bool) func(ctx context.Context, prefix string) (int64, error) {
		return func(ctx context.Context, prefix string) (int64, error) {
			caches := map[string]invalidate.Cache{}
			if fenced {
				caches[benchCache] = invalidate.Cache{Key: prefix + "{id}"}
			}
			inv, err := invalidate.New(rdb, k, time.Hour, caches)
			if err != nil {
				return 0, err
			}
			// As the handler calls it: the event's key sample, progress
			// reported at most once a second.
			var lastReport time.Time
			res, err := inv.Pattern(ctx, invalidate.PatternOptions{
				Pattern: prefix + "*",
				Sample:  100,
				Progress: func(invalidate.PatternResult) {
					if time.Since(lastReport) >= time.Second {
						lastReport = time.Now()
					}
				},
			})
			if err != nil {
				return 0, fmt.Errorf("bench invalidate: %w", err)
			}
			// SCAN may return a key twice: compare with what was scanned.
			if fenced && res.Fenced != res.Scanned {
				return 0, fmt.Errorf("bench invalidate: %d of %d scanned keys were a cache's", res.Fenced, res.Scanned)
			}
			last = res
			return res.Deleted, nil
		}
	}
	variants := []struct {
		name string
		keys int
		run  func(ctx context.Context, prefix string) (int64, error)
	}{
		{"ck", opts.Keys, ours(false)},
		{"fenced", opts.Keys, ours(true)},
		{"base", opts.BaselineKeys, func(ctx context.Context, prefix string) (int64, error) {
			return deleteOneByOne(ctx, rdb, prefix+"*")
		}},
	}
	rates := make([][]float64, len(variants))
	for round := 0; round < opts.Rounds; round++ {
		for i, v := range variants {
			prefix := opts.Prefix + v.name + ":"
			if err := seedHashes(ctx, rdb, prefix, v.keys); err != nil {
				return nil, err
			}
			start := time.Now()
			n, err := v.run(ctx, prefix)
			d := time.Since(start)
			if err != nil {
				return nil, err
			}
			if n != int64(v.keys) {
				return nil, fmt.Errorf("bench invalidate: %s variant deleted %d keys, want %d", v.name, n, v.keys)
			}
			rates[i] = append(rates[i], float64(n)/d.Seconds())
			if err := cleanup(ctx); err != nil {
				return nil, err
			}
		}
	}
	const baseline = "SCAN + DEL, one key per round trip"
	plain := NewResult(ScenarioInvalidatePattern, baseline, invMedian(rates[0]), invMedian(rates[2]))
	plain.Extra = map[string]any{
		"keys": opts.Keys, "baseline_keys": opts.BaselineKeys, "rounds": opts.Rounds,
		"cachekeeper_best_per_s": round(slices.Max(rates[0])), "baseline_best_per_s": round(slices.Max(rates[2])),
		"delete": "UNLINK per batch of " + strconv.Itoa(invalidate.BatchSize),
	}
	fenced := NewResult(ScenarioInvalidatePatternFenced, baseline, invMedian(rates[1]), invMedian(rates[2]))
	fenced.Extra = map[string]any{
		"keys": opts.Keys, "baseline_keys": opts.BaselineKeys, "rounds": opts.Rounds,
		"cachekeeper_best_per_s": round(slices.Max(rates[1])),
		"delete":                 "cache fence advanced once, then UNLINK per batch of " + strconv.Itoa(invalidate.BatchSize),
		"vs_unfenced":            math.Round(invMedian(rates[1])/invMedian(rates[0])*100) / 100,
		"scanned_last_round":     last.Scanned,
	}
	return []Result{plain, fenced}, nil
}

// seedHashes writes n three-field hashes prefix+i, like cached rows.
func seedHashes(ctx context.Context, rdb redis.UniversalClient, prefix string, n int) error {
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		pipe := rdb.Pipeline()
		for i := lo; i < min(lo+batch, n); i++ {
			id := strconv.Itoa(i)
			pipe.HSet(ctx, prefix+id, "id", id, "email", "user"+id+"@example.com", "name", "User "+id)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench invalidate: seed: %w", err)
		}
	}
	return nil
}

// deleteOneByOne is the baseline: SCAN MATCH, then one DEL round trip per key.
func deleteOneByOne(ctx context.Context, rdb redis.UniversalClient, match string) (int64, error) {
	var cursor uint64
	var n int64
	for {
		page, next, err := rdb.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return n, fmt.Errorf("bench invalidate baseline: %w", err)
		}
		for _, k := range page {
			d, err := rdb.Del(ctx, k).Result()
			if err != nil {
				return n, fmt.Errorf("bench invalidate baseline: %w", err)
			}
			n += d
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

// unlinkMatching deletes every key matching match, a batch per round trip.
func unlinkMatching(ctx context.Context, rdb redis.UniversalClient, match string) error {
	var cursor uint64
	for {
		page, next, err := rdb.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return fmt.Errorf("bench invalidate: clean %s: %w", match, err)
		}
		if len(page) > 0 {
			pipe := rdb.Pipeline()
			for _, k := range page {
				pipe.Unlink(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("bench invalidate: clean %s: %w", match, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func invMedian(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
