package tasks

import (
	"strings"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// SessionCleanupArgs scans session keys and removes expired, idle and
// orphaned data. Zero values mean the configured defaults.
type SessionCleanupArgs struct {
	// Pattern overrides the configured session key pattern (e.g. "session:*").
	Pattern string `json:"pattern,omitempty"`
	// MaxAge deletes sessions created longer ago than this.
	MaxAge Duration `json:"max_age,omitempty"`
	// IdleTimeout deletes sessions not seen for longer than this.
	IdleTimeout      Duration `json:"idle_timeout,omitempty"`
	MaxKeysPerSecond int      `json:"max_keys_per_second,omitempty"`
	// DryRun counts what would change and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// Kind implements Payload.
func (SessionCleanupArgs) Kind() string { return KindSessionCleanup }

// Validate implements Payload.
func (a SessionCleanupArgs) Validate() error {
	if a.MaxAge < 0 {
		return fieldErr(KindSessionCleanup, "max_age", "must not be negative")
	}
	if a.IdleTimeout < 0 {
		return fieldErr(KindSessionCleanup, "idle_timeout", "must not be negative")
	}
	if a.MaxKeysPerSecond < 0 {
		return fieldErr(KindSessionCleanup, "max_keys_per_second", "must be 0 (no cap) or positive")
	}
	if a.Pattern != "" && MatchesEverything(a.Pattern) {
		return fieldErr(KindSessionCleanup, "pattern", "%q matches every key; give a prefix such as \"session:*\"", a.Pattern)
	}
	return a.checkKeys(keys.DefaultRule())
}

// SessionRevokeArgs deletes every session of one user.
type SessionRevokeArgs struct {
	UserID string `json:"user_id"`
	// Scan also reads every session hash, for applications that do not
	// keep the per-user index set up to date (slow on a large keyspace).
	// Without an index set the worker scans anyway.
	Scan bool `json:"scan,omitempty"`
}

// Kind implements Payload.
func (SessionRevokeArgs) Kind() string { return KindSessionRevoke }

// Validate implements Payload.
func (a SessionRevokeArgs) Validate() error {
	if strings.TrimSpace(a.UserID) == "" {
		return fieldErr(KindSessionRevoke, "user_id", "must not be empty")
	}
	return nil
}
