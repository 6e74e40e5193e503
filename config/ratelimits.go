package config

import (
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// DefaultMemorySample is rate_limits.memory_sample's default: MEMORY USAGE
// before and after on one pruned key in this many. Measuring every key
// costs about a quarter more Redis time.
const DefaultMemorySample = 100

// RateLimitsConfig describes sliding-window rate-limit sets: sorted sets
// whose scores are request times.
type RateLimitsConfig struct {
	// Key is the sorted set template; its one placeholder is the client.
	Key string `yaml:"key"`
	// Window is the sliding window; older entries are pruned.
	Window time.Duration `yaml:"window"`
	// ScoreUnit is "s" (Unix seconds, the FastAPI guide) or "ms".
	ScoreUnit        string `yaml:"score_unit"`
	MaxKeysPerSecond int    `yaml:"max_keys_per_second"`
	// BatchSize is how many keys one prune script handles (default
	// DefaultScanBatch).
	BatchSize int `yaml:"batch_size"`
	// MemorySample measures MEMORY USAGE before and after pruning on one key
	// in this many (1: every key; 0: never), for bytes_reclaimed. Servers
	// without MEMORY USAGE (miniredis) report no bytes.
	MemorySample int `yaml:"memory_sample"`
	// Windows gives key patterns a window of their own, for limiters whose
	// window differs from Window (a login limiter: 5 an hour). Each key is
	// pruned with the window of the first pattern here it matches, else
	// with Window; keys whose TTL is longer than the window they are pruned
	// with are left alone anyway (they expire by themselves).
	Windows []RateLimitWindow `yaml:"windows,omitempty"`
}

// RateLimitWindow is one key pattern (a Redis glob) and its window.
type RateLimitWindow struct {
	Pattern string        `yaml:"pattern"`
	Window  time.Duration `yaml:"window"`
}

// DefaultRateLimits returns the rate_limits section's defaults.
func DefaultRateLimits() RateLimitsConfig {
	var r RateLimitsConfig
	r.setDefaults()
	return r
}

func (r *RateLimitsConfig) setDefaults() {
	r.Key = "rate_limit:{client}"
	r.Window = time.Minute
	r.ScoreUnit = "s"
	r.BatchSize = DefaultScanBatch
	r.MemorySample = DefaultMemorySample
}

// Validate checks the section alone (Config.Validate checks every section).
func (r RateLimitsConfig) Validate() error { return r.validate() }

func (r *RateLimitsConfig) validate() error {
	if _, err := keys.ParseSingle("rate_limits.key", r.Key); err != nil {
		return err
	}
	if err := positive("rate_limits.window", r.Window); err != nil {
		return err
	}
	if r.ScoreUnit != "s" && r.ScoreUnit != "ms" {
		return fmt.Errorf("rate_limits.score_unit %q must be s or ms", r.ScoreUnit)
	}
	if r.MaxKeysPerSecond < 0 {
		return fmt.Errorf("rate_limits.max_keys_per_second must be 0 (no cap) or positive")
	}
	if r.BatchSize < 0 {
		return fmt.Errorf("rate_limits.batch_size must be 0 (default %d) or positive", DefaultScanBatch)
	}
	if r.MemorySample < 0 {
		return fmt.Errorf("rate_limits.memory_sample must be 0 (off), 1 (every key) or N (one key in N)")
	}
	seen := map[string]bool{}
	for i, w := range r.Windows {
		if w.Pattern == "" || tasks.MatchesEverything(w.Pattern) {
			return fmt.Errorf("rate_limits.windows[%d].pattern %q must name the limiter's keys, such as \"rate_limit:login:*\"", i, w.Pattern)
		}
		if seen[w.Pattern] {
			return fmt.Errorf("rate_limits.windows[%d].pattern %q is given twice", i, w.Pattern)
		}
		seen[w.Pattern] = true
		if w.Window < time.Second {
			return fmt.Errorf("rate_limits.windows[%d].window must be at least 1s, got %s (pattern %q)", i, w.Window, w.Pattern)
		}
	}
	return nil
}
