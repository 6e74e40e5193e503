package tasks

import (
	"fmt"
	"strings"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// WarmArgs refreshes the cached hashes of the given ids of one cache from the
// database. Ids with no row have their key deleted.
type WarmArgs struct {
	Cache string `json:"cache"`
	IDs   IDs    `json:"ids"`
}

// Kind implements Payload.
func (WarmArgs) Kind() string { return KindWarm }

// Validate implements Payload.
func (a WarmArgs) Validate() error {
	if err := validateCacheName(KindWarm, a.Cache); err != nil {
		return err
	}
	return validateIDs(KindWarm, a.IDs, true)
}

// WarmAllArgs streams a whole table into a cache, resuming from its checkpoint.
type WarmAllArgs struct {
	Cache string `json:"cache"`
	// MaxKeysPerSecond caps the write rate; 0 means the configured default.
	MaxKeysPerSecond int `json:"max_keys_per_second,omitempty"`
	// Restart ignores a saved checkpoint and starts from the first row.
	Restart bool `json:"restart,omitempty"`
}

// Kind implements Payload.
func (WarmAllArgs) Kind() string { return KindWarmAll }

// Validate implements Payload.
func (a WarmAllArgs) Validate() error {
	if err := validateCacheName(KindWarmAll, a.Cache); err != nil {
		return err
	}
	if a.MaxKeysPerSecond < 0 {
		return fieldErr(KindWarmAll, "max_keys_per_second", "must be 0 (no cap) or positive, got %d", a.MaxKeysPerSecond)
	}
	return nil
}

// InvalidateArgs deletes cached keys, either by cache name and ids or by
// literal keys, advancing each key's fence so no in-flight warm can write a
// stale value back.
type InvalidateArgs struct {
	Cache string   `json:"cache,omitempty"`
	IDs   IDs      `json:"ids,omitempty"`
	Keys  []string `json:"keys,omitempty"`
	// Rewarm enqueues a fenced warm of the same ids afterwards.
	Rewarm bool `json:"rewarm,omitempty"`
}

// Kind implements Payload.
func (InvalidateArgs) Kind() string { return KindInvalidate }

// Validate implements Payload.
func (a InvalidateArgs) Validate() error {
	switch {
	case len(a.Keys) > 0 && (a.Cache != "" || len(a.IDs) > 0):
		return fieldErr(KindInvalidate, "keys", "cannot be combined with cache and ids; give one or the other")
	case len(a.Keys) > 0:
		for i, k := range a.Keys {
			if strings.TrimSpace(k) == "" {
				return fieldErr(KindInvalidate, fmt.Sprintf("keys[%d]", i), "must not be blank")
			}
		}
		if a.Rewarm {
			return fieldErr(KindInvalidate, "rewarm", "needs cache and ids, not keys")
		}
		return a.checkKeys(keys.DefaultRule())
	case a.Cache == "" && len(a.IDs) == 0:
		return fieldErr(KindInvalidate, "cache", "is required with ids (or give keys)")
	}
	if err := validateCacheName(KindInvalidate, a.Cache); err != nil {
		return err
	}
	return validateIDs(KindInvalidate, a.IDs, true)
}

// InvalidatePatternArgs deletes every key matching a glob pattern with SCAN and
// UNLINK, on every master of a cluster.
type InvalidatePatternArgs struct {
	Pattern string `json:"pattern"`
	// AllowAll must be set to accept a pattern that matches every key.
	AllowAll         bool `json:"allow_all,omitempty"`
	MaxKeysPerSecond int  `json:"max_keys_per_second,omitempty"`
}

// Kind implements Payload.
func (InvalidatePatternArgs) Kind() string { return KindInvalidatePattern }

// Validate implements Payload.
func (a InvalidatePatternArgs) Validate() error {
	if a.Pattern == "" {
		return fieldErr(KindInvalidatePattern, "pattern", "must not be empty (for example \"user:*\")")
	}
	if MatchesEverything(a.Pattern) && !a.AllowAll {
		return fieldErr(KindInvalidatePattern, "pattern", "%q matches every key; set allow_all (CLI: --yes) if you mean it", a.Pattern)
	}
	if a.MaxKeysPerSecond < 0 {
		return fieldErr(KindInvalidatePattern, "max_keys_per_second", "must be 0 (no cap) or positive, got %d", a.MaxKeysPerSecond)
	}
	return a.checkKeys(keys.DefaultRule())
}

// MatchesEverything reports whether a Redis glob pattern has no literal prefix,
// so that it would match keys of any name ("*", "?*", "[a-z]*", "*user*").
func MatchesEverything(pattern string) bool {
	if pattern == "" {
		return true
	}
	switch pattern[0] {
	case '*', '?', '[':
		return true
	case '\\':
		return false
	}
	return false
}

// InvalidateTagArgs deletes every key carrying a tag, and the tag set.
type InvalidateTagArgs struct {
	Tag string `json:"tag"`
}

// Kind implements Payload.
func (InvalidateTagArgs) Kind() string { return KindInvalidateTag }

// Validate implements Payload.
func (a InvalidateTagArgs) Validate() error {
	if strings.TrimSpace(a.Tag) == "" {
		return fieldErr(KindInvalidateTag, "tag", "must not be empty (for example \"org:7\")")
	}
	return nil
}
