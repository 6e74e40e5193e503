package redisx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// A sub-second BLMOVE waits that long, not the whole second go-redis
// stretches it to, and still moves an element that is there.
func TestBLMoveSubSecond(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	start := time.Now()
	err := redisx.BLMove(ctx, r.Client, "src", "dst", "RIGHT", "LEFT", 50*time.Millisecond).Err()
	took := time.Since(start)
	t.Logf("an empty 50ms BLMOVE returned after %s", took.Round(time.Millisecond))
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("empty list: %v, want redis.Nil", err)
	}
	if took >= 900*time.Millisecond {
		t.Errorf("a 50ms BLMOVE took %s: the timeout was rounded up to a second", took)
	}
	r.Client.RPush(ctx, "src", "a")
	if v, err := redisx.BLMove(ctx, r.Client, "src", "dst", "RIGHT", "LEFT", 250*time.Millisecond).Result(); err != nil || v != "a" {
		t.Fatalf("BLMOVE of an element: %q, %v", v, err)
	}
	if v, err := redisx.BLMove(ctx, r.Client, "dst", "src", "RIGHT", "LEFT", time.Second).Result(); err != nil || v != "a" {
		t.Fatalf("BLMOVE with whole seconds: %q, %v", v, err)
	}
}
