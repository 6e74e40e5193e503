package tasks

import "github.com/cachekeeper/cachekeeper/internal/keys"

// RateLimitPruneArgs trims sliding-window sorted sets: entries older than
// now - window are removed, emptied keys deleted. Zero values mean the
// configured defaults.
type RateLimitPruneArgs struct {
	Pattern          string   `json:"pattern,omitempty"`
	Window           Duration `json:"window,omitempty"`
	MaxKeysPerSecond int      `json:"max_keys_per_second,omitempty"`
}

// Kind implements Payload.
func (RateLimitPruneArgs) Kind() string { return KindRateLimitPrune }

// Validate implements Payload.
func (a RateLimitPruneArgs) Validate() error {
	if a.Window < 0 {
		return fieldErr(KindRateLimitPrune, "window", "must be positive (for example \"60s\")")
	}
	if a.MaxKeysPerSecond < 0 {
		return fieldErr(KindRateLimitPrune, "max_keys_per_second", "must be 0 (no cap) or positive")
	}
	if a.Pattern != "" && MatchesEverything(a.Pattern) {
		return fieldErr(KindRateLimitPrune, "pattern", "%q matches every key; give a prefix such as \"rate_limit:*\"", a.Pattern)
	}
	return a.checkKeys(keys.DefaultRule())
}
