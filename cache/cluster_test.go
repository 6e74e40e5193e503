package cache_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/cache"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// On Redis Cluster the functions are loaded on the key's master when missing,
// and a fill is refused by the copy of the cache fence in the key's own
// slot, which pattern invalidation advances.
func TestReadOnCluster(t *testing.T) {
	t.Parallel()
	cl := testenv.NewCluster(t, 3, 0)
	b := setup(t, cl.Client, func(_ *config.Config, o *cache.Options) { o.NoSingleFlight = true })
	ctx := context.Background()
	for id := 1; id <= 20; id++ {
		v, err := b.reader.GetWith(ctx, "user", id, func(ctx context.Context, sid string) (map[string]string, error) {
			return map[string]string{"id": sid}, nil
		})
		if err != nil || v["id"] != fmt.Sprint(id) {
			t.Fatalf("id %d: %v, %v", id, v, err)
		}
	}
	for _, k := range []string{"user:1", "user:7", "user:20"} {
		if n, err := cl.Client.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Fatalf("%s cached: %d, %v", k, n, err)
		}
	}
	for _, addr := range cl.Addrs[:3] {
		node := redis.NewClient(&redis.Options{Addr: addr})
		libs, err := node.FunctionList(ctx, redis.FunctionListQuery{}).Result()
		_ = node.Close()
		if err != nil || len(libs) != 1 || libs[0].Name != redisx.LibraryName {
			t.Fatalf("%s: libraries %v, %v; want %s loaded on every master", addr, libs, err, redisx.LibraryName)
		}
	}
	// Waiters on a cluster block on the key's wake list (BLPOP routed to the
	// key's master) and are woken by the fill.
	var calls atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.reader.GetWith(ctx, "user", 50, slowLoader(&calls, 100*time.Millisecond))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d loads for 20 readers on a cluster, want 1", calls.Load())
	}

	// Pattern invalidation advances the cache fence of every slot; the copy in
	// user:99's slot must refuse its fill.
	load := func(ctx context.Context, sid string) (map[string]string, error) {
		cf := keys.Default().CacheFence("user", keys.SlotTag(keys.Slot("user:"+sid)))
		return map[string]string{"id": sid}, redisx.FenceCacheAdvance.Run(ctx, cl.Client, []string{cf}, 60000).Err()
	}
	if _, err := b.reader.GetWith(ctx, "user", 99, load); err != nil {
		t.Fatal(err)
	}
	if n := cl.Client.Exists(ctx, "user:99").Val(); n != 0 {
		t.Fatal("a fill after the cache's invalidation was written on the cluster")
	}
}
