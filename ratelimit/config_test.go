package ratelimit_test

import (
	"context"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/ratelimit"
)

// A limiter built from the configuration uses the key the prune job scans.
func TestNewFromConfigSharesTheLayout(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	cfg := config.DefaultRateLimits()
	cfg.Key, cfg.ScoreUnit = "app:rl:{client}", "ms"
	l, err := ratelimit.NewFromConfig(r.Client, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res, err := l.Allow(ctx, "c1"); err != nil || !res.Allowed {
		t.Fatalf("first request: %+v, %v", res, err)
	}
	if res, err := l.Allow(ctx, "c1"); err != nil || res.Allowed {
		t.Fatalf("second request over a limit of 1: %+v, %v", res, err)
	}
	if n := r.Client.ZCard(ctx, "app:rl:c1").Val(); n != 1 {
		t.Fatalf("app:rl:c1 holds %d entries, want 1", n)
	}
}
