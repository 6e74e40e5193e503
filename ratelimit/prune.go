package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// PruneReport is what a ratelimit:prune run did; it is the job's
// result (JSON) and the fields of its log line.
type PruneReport struct {
	Pattern string `json:"pattern"`
	Window  string `json:"window"`
	// Scanned is how many sorted sets matched the pattern.
	Scanned int64 `json:"scanned"`
	// EntriesRemoved is how many members were older than now - window.
	EntriesRemoved int64 `json:"entries_removed"`
	// KeysDeleted is how many sets were emptied (Redis deletes an empty set).
	KeysDeleted int64 `json:"keys_deleted"`
	// TTLFixed is how many sets had no TTL and were given one window.
	TTLFixed int64 `json:"ttl_fixed"`
	// KeptLongerWindow is how many sets were left alone because their TTL
	// is longer than the window (a limiter with a longer window of its own).
	KeptLongerWindow int64 `json:"kept_longer_window"`
	// Windows are the passes of rate_limits.windows' patterns, each with
	// its own window (their counts are included above).
	Windows []PruneReport `json:"windows,omitempty"`
	// BytesReclaimed estimates the memory freed: BytesMeasured scaled from
	// the measured keys to every pruned key (exact when
	// rate_limits.memory_sample is 1). Nil when the server has no MEMORY
	// USAGE (miniredis) or measuring is off.
	BytesReclaimed *int64 `json:"bytes_reclaimed"`
	// BytesMeasured sums MEMORY USAGE before minus after over the measured
	// keys: one key in rate_limits.memory_sample, since measuring every
	// key costs about a quarter more Redis time.
	BytesMeasured     int64 `json:"bytes_measured"`
	BytesMeasuredKeys int64 `json:"bytes_measured_keys"`
	// Skipped counts keys that changed type between SCAN and the prune.
	Skipped    int64 `json:"skipped"`
	DurationMS int64 `json:"duration_ms"`
}

// Prune is the ratelimit:prune job: it trims every sliding-window set of the configured layout
// (or args.Pattern): SCAN ... TYPE zset in batches, then one Lua script per
// batch (per hash slot on a cluster) that removes entries older than the
// server's TIME minus the window, lets emptied sets go and restores a
// missing TTL. Running it twice changes nothing the second time, so a
// retried job is harmless. On error the report holds what was done so far.
func Prune(ctx context.Context, rdb redis.UniversalClient, cfg config.RateLimitsConfig, args tasks.RateLimitPruneArgs) (PruneReport, error) {
	return PrunePaced(ctx, rdb, cfg, args, nil)
}

// Pacer paces a maintenance walk; the worker passes the pacer of its `pace:`
// settings. Batch is the size of the next batch (0: the configured one),
// Wait blocks until it may start, Observe is told how many keys it carried
// and how long it took; every Wait that returns nil is followed by one
// Observe.
type Pacer interface {
	Batch() int
	Wait(ctx context.Context) error
	Observe(keys int, took time.Duration)
}

// PrunePaced is Prune with its batches paced by p (nil: unpaced).
func PrunePaced(ctx context.Context, rdb redis.UniversalClient, cfg config.RateLimitsConfig, args tasks.RateLimitPruneArgs, p Pacer) (PruneReport, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return PruneReport{}, err
	}
	if err := args.Validate(); err != nil {
		return PruneReport{}, err
	}
	tmpl, err := keys.ParseSingle("rate_limits.key", cfg.Key)
	if err != nil {
		return PruneReport{}, err
	}
	pattern, window := tmpl.Pattern(), cfg.Window
	var windows []config.RateLimitWindow
	if args.Pattern != "" {
		pattern = args.Pattern
	} else {
		windows = cfg.Windows // a job naming its own pattern prunes that only
	}
	if args.Window > 0 {
		window = time.Duration(args.Window)
	}
	var others []string
	for _, w := range windows {
		others = append(others, w.Pattern)
	}
	// Each key is pruned once, with the window of the first pattern of
	// rate_limits.windows it matches, else with the default window.
	rep, err := prunePass(ctx, rdb, cfg, args, p, pattern, window, others)
	for i, w := range windows {
		if err != nil {
			break
		}
		var r PruneReport
		r, err = prunePass(ctx, rdb, cfg, args, p, w.Pattern, w.Window, others[:i])
		rep.add(r)
		rep.Windows = append(rep.Windows, r)
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	return rep, err
}

// add sums r's counts into p.
func (p *PruneReport) add(r PruneReport) {
	p.Scanned += r.Scanned
	p.EntriesRemoved += r.EntriesRemoved
	p.KeysDeleted += r.KeysDeleted
	p.TTLFixed += r.TTLFixed
	p.KeptLongerWindow += r.KeptLongerWindow
	p.Skipped += r.Skipped
	p.BytesMeasured += r.BytesMeasured
	p.BytesMeasuredKeys += r.BytesMeasuredKeys
	if r.BytesReclaimed != nil {
		sum := *r.BytesReclaimed
		if p.BytesReclaimed != nil {
			sum += *p.BytesReclaimed
		}
		p.BytesReclaimed = &sum
	}
}

// prunePass prunes the sorted sets matching pattern to window, except
// those matching one of exclude (pruned in a pass of their own), its
// batches paced by p (nil: unpaced).
func prunePass(ctx context.Context, rdb redis.UniversalClient, cfg config.RateLimitsConfig, args tasks.RateLimitPruneArgs, p Pacer, pattern string, window time.Duration, exclude []string) (PruneReport, error) {
	start := time.Now()
	rep := PruneReport{Pattern: pattern, Window: window.String()}
	if window < time.Millisecond {
		return rep, fmt.Errorf("%s: field \"window\" must be at least 1ms, got %s", tasks.KindRateLimitPrune, window)
	}
	maxRate := cfg.MaxKeysPerSecond
	if args.MaxKeysPerSecond > 0 {
		maxRate = args.MaxKeysPerSecond
	}
	unitUS := int64(1e6)
	if cfg.ScoreUnit == "ms" {
		unitUS = 1e3
	}
	// Whether the server answers MEMORY USAGE is asked once, of the first
	// key scanned (no probe key of our own).
	sample := cfg.MemorySample
	var probe sync.Once
	ttlMS := max(window.Milliseconds(), 1)

	var mu sync.Mutex // batches of different cluster masters may run at once
	var offset int64
	_, err := scan.Each(ctx, rdb, scan.Options{Match: rep.Pattern, Type: "zset", BatchSize: cfg.BatchSize, MaxKeysPerSecond: maxRate, Pacer: p},
		func(ctx context.Context, batch []string) error {
			batch = excluded(batch, exclude)
			if len(batch) == 0 {
				return nil
			}
			mu.Lock()
			off := offset
			offset += int64(len(batch))
			mu.Unlock()
			probe.Do(func() {
				if sample > 0 && !memoryUsageSupported(ctx, rdb, batch[0]) {
					sample = 0
				}
			})
			res, err := redisx.RunPerSlot(ctx, rdb, redisx.RateLimitPrune, batch, window.Microseconds(), unitUS, ttlMS, sample, off)
			if err != nil {
				return fmt.Errorf("prune batch: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Scanned += int64(len(batch))
			rep.EntriesRemoved += res[0]
			rep.KeysDeleted += res[1]
			rep.TTLFixed += res[2]
			rep.BytesMeasured += res[3]
			rep.BytesMeasuredKeys += res[4]
			rep.Skipped += res[5]
			if len(res) > 6 {
				rep.KeptLongerWindow += res[6]
			}
			return nil
		})
	rep.DurationMS = time.Since(start).Milliseconds()
	probe.Do(func() { sample = 0 }) // nothing scanned: nothing measured
	if sample > 0 {
		est := rep.BytesMeasured
		if pruned := rep.Scanned - rep.Skipped - rep.KeptLongerWindow; rep.BytesMeasuredKeys > 0 && rep.BytesMeasuredKeys < pruned {
			est = int64(float64(rep.BytesMeasured) * float64(pruned) / float64(rep.BytesMeasuredKeys))
		}
		rep.BytesReclaimed = &est
	}
	if err != nil {
		return rep, fmt.Errorf("ratelimit prune %q: %w", rep.Pattern, err)
	}
	return rep, nil
}

// excluded drops from batch the keys matching one of patterns (another
// pass prunes them with their own window).
func excluded(batch, patterns []string) []string {
	if len(patterns) == 0 {
		return batch
	}
	out := batch[:0:0]
	for _, k := range batch {
		own := false
		for _, p := range patterns {
			if keys.GlobMatch(p, k) {
				own = true
				break
			}
		}
		if !own {
			out = append(out, k)
		}
	}
	return out
}

// memoryUsageSupported reports whether the server answers MEMORY USAGE of
// key (real Redis does; miniredis does not).
func memoryUsageSupported(ctx context.Context, rdb redis.UniversalClient, key string) bool {
	err := rdb.MemoryUsage(ctx, key).Err()
	return err == nil || errors.Is(err, redis.Nil)
}
