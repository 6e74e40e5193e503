// Package ratelimit is a sliding-window-log rate limiter on Redis, in the
// layout cachekeeper's ratelimit:prune job maintains: one sorted set per
// client, "rate_limit:{client}", whose scores are request times in Unix
// seconds (or milliseconds) and whose key expires one window after the last
// accepted request.
//
// The usual version (the FastAPI guide's) runs TIME, ZREMRANGEBYSCORE,
// ZCARD, ZADD and EXPIRE as separate calls, with the current second as the
// member. That has two bugs: two requests can both read a count under the
// limit before either adds itself, so both pass (check-then-add race); and
// requests within the same second share one member, so they are counted
// once (under-counting). Allow runs trim, count, add and expire in one Lua
// script, atomically, with a member unique to each request.
//
// Prune is the ratelimit:prune job the worker runs to keep these sets small;
// NewFromConfig builds a Limiter in the layout of the configuration's
// rate_limits section, which Prune maintains.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// DefaultKey is the FastAPI guide's key template.
const DefaultKey = "rate_limit:{client}"

// Config describes one limit: at most Limit requests per client in any
// Window.
type Config struct {
	// Key is the sorted set's template; its one placeholder is the client
	// (default DefaultKey).
	Key string
	// Limit is the number of requests allowed per window (required).
	Limit int
	// Window is the length of the sliding window, at least 1ms (required).
	Window time.Duration
	// ScoreUnit is "s" (Unix seconds, the guide's, default) or "ms"; it must
	// match the prune job's rate_limits.score_unit.
	ScoreUnit string
}

// ConfigFrom returns the Config of a limit of limit requests per window in
// the layout of the rate_limits section of cachekeeper's configuration
// (config.Config.RateLimits: key template, window, score unit), the layout
// the ratelimit:prune job keeps small.
func ConfigFrom(c config.RateLimitsConfig, limit int) Config {
	return Config{Key: c.Key, Limit: limit, Window: c.Window, ScoreUnit: c.ScoreUnit}
}

// NewFromConfig is New with ConfigFrom(c, limit).
func NewFromConfig(rdb redis.UniversalClient, c config.RateLimitsConfig, limit int) (*Limiter, error) {
	return New(rdb, ConfigFrom(c, limit))
}

// Result is the outcome of one request.
type Result struct {
	// Allowed is true when the request fits in the window and was counted.
	Allowed bool
	// Limit is the configured limit.
	Limit int
	// Remaining is how many more requests fit in the window now.
	Remaining int
	// RetryAfter is, for a refused request, how long until the oldest
	// request leaves the window; 0 when allowed.
	RetryAfter time.Duration
}

// Limiter applies one Config. It is safe for concurrent use.
type Limiter struct {
	rdb    redis.UniversalClient
	tmpl   keys.Template
	limit  int
	window time.Duration
	unitUS int64
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	tmpl, err := keys.ParseSingle("ratelimit: Key", cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.Limit <= 0 {
		return nil, fmt.Errorf("ratelimit: Limit %d must be positive", cfg.Limit)
	}
	if cfg.Window < time.Millisecond {
		return nil, fmt.Errorf("ratelimit: Window %s must be at least 1ms", cfg.Window)
	}
	l := &Limiter{rdb: rdb, tmpl: tmpl, limit: cfg.Limit, window: cfg.Window}
	switch cfg.ScoreUnit {
	case "", "s":
		l.unitUS = 1e6
	case "ms":
		l.unitUS = 1e3
	default:
		return nil, fmt.Errorf("ratelimit: ScoreUnit %q must be s or ms", cfg.ScoreUnit)
	}
	return l, nil
}

// Key returns the sorted set of client.
func (l *Limiter) Key(client string) string { return l.tmpl.RenderOne(client) }

// Allow counts one request of client, if it fits, and reports the outcome.
func (l *Limiter) Allow(ctx context.Context, client string) (Result, error) {
	key := l.Key(client)
	suffix := strconv.FormatUint(rand.Uint64(), 36)
	v, err := redisx.RateLimitAllow.Run(ctx, l.rdb, []string{key}, l.limit, l.window.Microseconds(), l.unitUS, suffix).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: %s: %w", key, err)
	}
	if len(v) != 3 {
		return Result{}, fmt.Errorf("ratelimit: %s: script returned %d values, want 3", key, len(v))
	}
	return Result{
		Allowed:    v[0] == 1,
		Limit:      l.limit,
		Remaining:  int(v[1]),
		RetryAfter: time.Duration(v[2]) * time.Microsecond,
	}, nil
}

// Reset forgets every request of client.
func (l *Limiter) Reset(ctx context.Context, client string) error {
	if err := l.rdb.Del(ctx, l.Key(client)).Err(); err != nil {
		return fmt.Errorf("ratelimit: reset %s: %w", l.Key(client), err)
	}
	return nil
}
