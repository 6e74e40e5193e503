package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// ScenarioPrune is the JSON scenario name of Prune.
const ScenarioPrune = "ratelimit_prune"

// PruneOptions configure the ratelimit_prune scenario. Zero fields take the
// defaults noted.
type PruneOptions struct {
	// Keys is how many rate-limit sets cachekeeper prunes (default 100,000).
	Keys int
	// Entries is how many members each set holds, half of them older than
	// the window (default 20).
	Entries int
	// BaselineKeys is how many sets the one-key-per-round-trip baseline
	// prunes (default min(Keys, 20,000): it is slow, and a rate needs no
	// more).
	BaselineKeys int
	// BatchSize is the prune job's rate_limits.batch_size (default 1000).
	BatchSize int
	// MemorySample is the prune job's rate_limits.memory_sample (default
	// config.DefaultMemorySample; -1 turns measuring off).
	MemorySample int
	// Rounds is how many times each variant runs (default 3); rates are
	// medians over the rounds.
	Rounds int
	// Prefix starts every key the scenario writes (default
	// "cachekeeper_bench:ratelimit:"); they are deleted before and after.
	Prefix string
	// Logger receives a progress line per variant and round (default: discard).
	Logger *slog.Logger
}

func (o PruneOptions) withDefaults() (PruneOptions, error) {
	if o.Keys < 0 || o.Entries < 0 || o.BaselineKeys < 0 || o.BatchSize < 0 || o.Rounds < 0 || o.MemorySample < -1 {
		return o, fmt.Errorf("%w: bench prune: --keys, --entries, --baseline-keys, --batch and --rounds must not be negative", ErrInvalidOptions)
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Keys == 0 {
		o.Keys = 100_000
	}
	if o.Entries == 0 {
		o.Entries = 20
	}
	if o.Entries < 2 {
		return o, fmt.Errorf("%w: bench prune: --entries must be at least 2 (half of them are old), got %d", ErrInvalidOptions, o.Entries)
	}
	if o.BaselineKeys == 0 {
		o.BaselineKeys = min(o.Keys, 20_000)
	}
	if o.BatchSize == 0 {
		o.BatchSize = config.DefaultScanBatch
	}
	switch o.MemorySample {
	case 0:
		o.MemorySample = config.DefaultMemorySample
	case -1:
		o.MemorySample = 0
	}
	if o.Prefix == "" {
		o.Prefix = "cachekeeper_bench:ratelimit:"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// pruneWindow is the window the scenario's sets use.
const pruneWindow = time.Minute

// Prune measures pruning of sliding-window rate-limit sets: Keys sets of
// Entries members each, half older than the window, half of the sets with
// no TTL. cachekeeper's ratelimit:prune path (ratelimit.Prune: SCAN
// TYPE zset, one Lua script per batch) is timed against a baseline that
// prunes one key per round trip (SCAN, then ZREMRANGEBYSCORE per key), on
// fresh copies of the same data in the same run. Extra also reports SCAN
// piped into pipelined ZREMRANGEBYSCORE, the redis-cli way, which neither
// restores TTLs nor counts what it did.
//
// The variants take turns, Rounds times, each on a keyspace holding only its
// own keys; every rate reported is the median of its rounds (Extra has the
// best too), which keeps a busy machine from favouring one variant. Rates
// are keys per second. Prune writes only keys under opts.Prefix and deletes
// them before and after; run it on a server of its own.
func Prune(ctx context.Context, rdb redis.UniversalClient, opts PruneOptions) (Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = deleteMatching(context.WithoutCancel(ctx), rdb, opts.Prefix+"*") }()
	if err := deleteMatching(ctx, rdb, opts.Prefix+"*"); err != nil {
		return Result{}, err
	}

	var rep ratelimit.PruneReport
	ours := func(ctx context.Context, prefix string) (int64, error) {
		cfg := config.DefaultRateLimits()
		cfg.Key = prefix + "{client}"
		cfg.Window = pruneWindow
		cfg.BatchSize = opts.BatchSize
		cfg.MemorySample = opts.MemorySample
		var err error
		rep, err = ratelimit.Prune(ctx, rdb, cfg, tasks.RateLimitPruneArgs{})
		if err != nil {
			return 0, fmt.Errorf("bench prune: %w", err)
		}
		wantRemoved := int64(opts.Keys) * int64(opts.Entries/2)
		if rep.Scanned != int64(opts.Keys) || rep.EntriesRemoved != wantRemoved || rep.TTLFixed != int64((opts.Keys+1)/2) {
			return 0, fmt.Errorf("bench prune: pruned %d keys, %d entries, fixed %d TTLs; want %d, %d, %d",
				rep.Scanned, rep.EntriesRemoved, rep.TTLFixed, opts.Keys, wantRemoved, (opts.Keys+1)/2)
		}
		return rep.Scanned, nil
	}
	variants := []struct {
		name string
		keys int
		run  func(ctx context.Context, prefix string) (int64, error)
	}{
		{"ck", opts.Keys, ours},
		{"base", opts.BaselineKeys, func(ctx context.Context, prefix string) (int64, error) {
			return pruneOneByOne(ctx, rdb, prefix+"*")
		}},
		{"pipe", opts.Keys, func(ctx context.Context, prefix string) (int64, error) {
			return prunePipelined(ctx, rdb, prefix+"*", opts.BatchSize)
		}},
	}
	rates := make([][]float64, len(variants))
	for r := 0; r < opts.Rounds; r++ {
		for i, v := range variants {
			prefix := opts.Prefix + v.name + ":"
			if err := seedRateLimits(ctx, rdb, prefix, v.keys, opts.Entries, opts.BatchSize); err != nil {
				return Result{}, err
			}
			start := time.Now()
			n, err := v.run(ctx, prefix)
			d := time.Since(start)
			if err != nil {
				return Result{}, err
			}
			if n != int64(v.keys) {
				return Result{}, fmt.Errorf("bench prune: %s variant handled %d keys, want %d", v.name, n, v.keys)
			}
			rates[i] = append(rates[i], float64(n)/d.Seconds())
			opts.Logger.Info("bench prune round", slog.Int("round", r+1), slog.String("variant", v.name),
				slog.Int64("keys", n), slog.Float64("keys_per_s", round(float64(n)/d.Seconds())))
			if err := deleteMatching(ctx, rdb, prefix+"*"); err != nil {
				return Result{}, err
			}
		}
	}

	res := NewResult(ScenarioPrune, "SCAN + ZREMRANGEBYSCORE, one key per round trip", medianOf(rates[0]), medianOf(rates[1]))
	res.Extra = map[string]any{
		"keys":                      opts.Keys,
		"entries_per_key":           opts.Entries,
		"baseline_keys":             opts.BaselineKeys,
		"batch_size":                opts.BatchSize,
		"rounds":                    opts.Rounds,
		"cachekeeper_best_per_s":    round(slices.Max(rates[0])),
		"baseline_best_per_s":       round(slices.Max(rates[1])),
		"pipelined_zrem_per_s":      round(medianOf(rates[2])),
		"pipelined_zrem_best_per_s": round(slices.Max(rates[2])),
		"entries_removed":           rep.EntriesRemoved,
		"keys_deleted":              rep.KeysDeleted,
		"ttl_fixed":                 rep.TTLFixed,
		"memory_sample":             opts.MemorySample,
		"bytes_measured":            rep.BytesMeasured,
		"bytes_measured_keys":       rep.BytesMeasuredKeys,
	}
	if rep.BytesReclaimed != nil {
		res.Extra["bytes_reclaimed"] = *rep.BytesReclaimed
	}
	return res, nil
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seedRateLimits writes n sets prefix+i with entries members each: the
// first half older than the window, the rest inside it; even sets get an
// EXPIRE, odd ones none (the messy layout). Scores are whole Unix seconds,
// as the FastAPI guide writes them (with unique members, unlike the guide).
// Fractional scores cost every variant alike about 1.5 µs more Redis time
// per key, to parse the listpack's scores.
func seedRateLimits(ctx context.Context, rdb redis.UniversalClient, prefix string, n, entries, batch int) error {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("bench prune: TIME: %w", err)
	}
	nowS := float64(now.Unix())
	members := make([]redis.Z, entries)
	for j := range members {
		members[j].Member = "m" + strconv.Itoa(j)
		if j < entries/2 {
			members[j].Score = nowS - pruneWindow.Seconds() - 1 - float64(j)
		} else {
			members[j].Score = nowS - float64(j-entries/2)
		}
	}
	for lo := 0; lo < n; lo += batch {
		pipe := rdb.Pipeline()
		for i := lo; i < min(lo+batch, n); i++ {
			key := prefix + strconv.Itoa(i)
			pipe.ZAdd(ctx, key, members...)
			if i%2 == 0 {
				pipe.Expire(ctx, key, pruneWindow)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench prune: seed: %w", err)
		}
	}
	return nil
}

// cutoff is the baseline's now - window in seconds, from the server clock.
func cutoff(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("bench prune: TIME: %w", err)
	}
	return strconv.FormatFloat(float64(now.Add(-pruneWindow).UnixMicro())/1e6, 'f', 6, 64), nil
}

// pruneOneByOne is the baseline: every key costs a round trip.
func pruneOneByOne(ctx context.Context, rdb redis.UniversalClient, match string) (int64, error) {
	max, err := cutoff(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return scan.Each(ctx, rdb, scan.Options{Match: match}, func(ctx context.Context, keys []string) error {
		for _, k := range keys {
			if err := rdb.ZRemRangeByScore(ctx, k, "-inf", max).Err(); err != nil {
				return fmt.Errorf("bench prune baseline: %w", err)
			}
		}
		return nil
	})
}

// prunePipelined is SCAN piped into pipelined ZREMRANGEBYSCORE.
func prunePipelined(ctx context.Context, rdb redis.UniversalClient, match string, batch int) (int64, error) {
	max, err := cutoff(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return scan.Each(ctx, rdb, scan.Options{Match: match, BatchSize: batch}, func(ctx context.Context, keys []string) error {
		pipe := rdb.Pipeline()
		for _, k := range keys {
			pipe.ZRemRangeByScore(ctx, k, "-inf", max)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("bench prune pipelined: %w", err)
		}
		return nil
	})
}

// deleteMatching unlinks every key matching match, in pipelines: the
// benchmarks' own keys, including asynq's keys of the queues they created
// (so the walk includes internal keys).
func deleteMatching(ctx context.Context, rdb redis.UniversalClient, match string) error {
	_, err := scan.Each(ctx, rdb, scan.Options{Match: match, Internal: true}, func(ctx context.Context, keys []string) error {
		pipe := rdb.Pipeline()
		for _, k := range keys {
			pipe.Unlink(ctx, k)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("bench prune: delete %s: %w", match, err)
	}
	return err
}
