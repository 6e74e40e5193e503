package invalidate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

type bundle struct {
	rdb   redis.UniversalClient
	inv   *invalidate.Invalidator
	fence *fence.Fencer
}

func setup(t *testing.T, rdb redis.UniversalClient, caches map[string]invalidate.Cache) *bundle {
	t.Helper()
	inv, err := invalidate.New(rdb, keys.Default(), time.Hour, caches)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fence.New(rdb, keys.Default(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{rdb: rdb, inv: inv, fence: f}
}

var userCache = map[string]invalidate.Cache{"user": {Key: "user:{id}"}}

// seed writes n string keys named format(i) in pipelines of 10,000.
func seed(t *testing.T, rdb redis.UniversalClient, n int, name func(i int) string) {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < n; lo += 10000 {
		pipe := rdb.Pipeline()
		for i := lo; i < min(n, lo+10000); i++ {
			pipe.Set(ctx, name(i), i, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeysFor(t *testing.T) {
	t.Parallel()
	r := testenv.NewMiniredis(t)
	b := setup(t, r.Client, map[string]invalidate.Cache{
		"user":    {Key: "user:{id}"},
		"member":  {Key: "org:{org_id}:member:{id}"},
		"byemail": {Key: "user_by_email:{email}"},
		"account": {Key: "acct:{uid}:{uid}", IDColumn: "uid"},
	})
	got, err := b.inv.KeysFor("user", []string{"1", "a b"})
	if err != nil || !slices.Equal(got, []string{"user:1", "user:a b"}) {
		t.Fatalf("KeysFor(user) = %v, %v", got, err)
	}
	if got, err := b.inv.KeysFor("account", []string{"7"}); err != nil || got[0] != "acct:7:7" {
		t.Fatalf("KeysFor(account) = %v, %v", got, err)
	}
	for cache, want := range map[string]string{
		"nope":    "unknown cache \"nope\" (configured: account, byemail, member, user)",
		"member":  "{org_id}, which is not the id column \"id\"; invalidate by keys instead",
		"byemail": "{email}, which is not the id column",
	} {
		_, err := b.inv.KeysFor(cache, []string{"1"})
		if !errors.Is(err, invalidate.ErrInvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("KeysFor(%s) error = %v, want one containing %q", cache, err, want)
		}
	}
}

func TestCacheOf(t *testing.T) {
	t.Parallel()
	r := testenv.NewMiniredis(t)
	b := setup(t, r.Client, map[string]invalidate.Cache{"user": {Key: "user:{id}"}, "post": {Key: "post:{id}"}})
	if c, ids, ok := b.inv.CacheOf([]string{"user:1", "user:2"}); !ok || c != "user" || !slices.Equal(ids, []string{"1", "2"}) {
		t.Fatalf("CacheOf = %q %v %v", c, ids, ok)
	}
	for _, keyList := range [][]string{{"user:1", "post:2"}, {"other:1"}, nil} {
		if c, _, ok := b.inv.CacheOf(keyList); ok {
			t.Errorf("CacheOf(%v) = %q, want no single cache", keyList, c)
		}
	}
}

func TestKeysAdvancesFencesInBatches(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	n := 2*invalidate.BatchSize + 7
	seed(t, r.Client, n, func(i int) string { return fmt.Sprintf("user:%d", i) })
	st, _ := b.fence.Begin(ctx) // a warm's read began before the invalidation
	var list []string
	for i := 0; i < n+3; i++ { // three keys that do not exist
		list = append(list, fmt.Sprintf("user:%d", i))
	}
	existed, err := b.inv.Keys(ctx, list)
	if err != nil || existed != n {
		t.Fatalf("Keys = %d, %v; want %d existed", existed, err, n)
	}
	if size := r.Client.DBSize(ctx).Val(); size != int64(n+3) { // one fence per key, no key left
		t.Fatalf("DBSIZE = %d, want %d fences only", size, n+3)
	}
	res, err := b.fence.Write(ctx, st, "user", []fence.Entry{{Key: "user:5", Fields: []string{"id", "5"}, TTL: time.Hour}, {Key: fmt.Sprintf("user:%d", n+1), Fields: []string{"id", "x"}, TTL: time.Hour}})
	if err != nil || res.Written != 0 || len(res.Skipped) != 2 {
		t.Fatalf("stale write after invalidation: %+v, %v; want both refused", res, err)
	}
	// Idempotent: again, nothing exists and nothing fails.
	if existed, err := b.inv.Keys(ctx, list); err != nil || existed != 0 {
		t.Fatalf("second Keys = %d, %v", existed, err)
	}
}

func TestPatternLeavesEveryNonMatchingKeyAlone(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, nil)
	ctx := context.Background()
	const matching = 100000
	seed(t, r.Client, matching, func(i int) string { return fmt.Sprintf("user:%d", i) })
	// Names close to the pattern that must survive.
	near := []func(int) string{
		func(i int) string { return fmt.Sprintf("users:%d", i) },
		func(i int) string { return fmt.Sprintf("xuser:%d", i) },
		func(i int) string { return fmt.Sprintf("user_%d", i) },
		func(i int) string { return fmt.Sprintf("User:%d", i) },
		func(i int) string { return fmt.Sprintf("session:user:%d", i) },
	}
	for _, f := range near {
		seed(t, r.Client, 10000, f)
	}
	var progress int
	res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: "user:*", Sample: 5, Progress: func(invalidate.PatternResult) { progress++ }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scanned < matching || res.Deleted != matching || res.Fenced != 0 || len(res.Sample) != 5 {
		t.Fatalf("result = %+v, want %d deleted with UNLINK", res, matching)
	}
	if progress == 0 {
		t.Error("Progress never called")
	}
	if n := r.Client.DBSize(ctx).Val(); n != int64(len(near)*10000) {
		t.Fatalf("DBSIZE = %d, want the %d non-matching keys", n, len(near)*10000)
	}
	// Every non-matching key is still there with its value.
	for _, f := range near {
		pipe := r.Client.Pipeline()
		cmds := make([]*redis.StringCmd, 10000)
		for i := range cmds {
			cmds[i] = pipe.Get(ctx, f(i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("a non-matching key such as %q is gone: %v", f(0), err)
		}
		for i, c := range cmds {
			if c.Val() != fmt.Sprint(i) {
				t.Fatalf("%s = %q, want %d", f(i), c.Val(), i)
			}
		}
	}
}

func TestPatternFencesKeysOfDeclaredCaches(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	seed(t, r.Client, 50, func(i int) string { return fmt.Sprintf("user:%d", i) })
	seed(t, r.Client, 50, func(i int) string { return fmt.Sprintf("user-avatar:%d", i) })
	st, _ := b.fence.Begin(ctx) // a warm of user 3 read the database before
	res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: "user*"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 100 || res.Fenced != 50 {
		t.Fatalf("result = %+v, want 100 deleted, the 50 user:{id} keys fenced", res)
	}
	w, err := b.fence.Write(ctx, st, "user", []fence.Entry{{Key: "user:3", Fields: []string{"id", "3", "email", "stale"}, TTL: time.Hour}})
	if err != nil || w.Written != 0 {
		t.Fatalf("the in-flight warm wrote user:3 back after the pattern invalidation: %+v %v", w, err)
	}
	// A key the walk never saw (not cached when it ran) is refused too: the
	// cache's fence covers every key of the cache.
	w, err = b.fence.Write(ctx, st, "user", []fence.Entry{{Key: "user:99", Fields: []string{"id", "99"}, TTL: time.Hour}})
	if err != nil || w.Written != 0 {
		t.Fatalf("the in-flight warm wrote user:99, absent during the walk: %+v %v", w, err)
	}
	// One fence for the cache, none per key: only it remains.
	if n := r.Client.DBSize(ctx).Val(); n != 1 || r.Client.Exists(ctx, keys.Default().CacheFence("user", "")).Val() != 1 {
		t.Fatalf("DBSIZE = %d, want only the cache's fence", n)
	}
	// A pattern no key of the cache can match leaves its fence alone: a warm
	// begun before it still writes.
	st2, _ := b.fence.Begin(ctx)
	seed(t, r.Client, 5, func(i int) string { return fmt.Sprintf("session:%d", i) })
	if res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: "session:*"}); err != nil || res.Deleted != 5 || res.Fenced != 0 {
		t.Fatalf("session:* = %+v %v", res, err)
	}
	if w, err := b.fence.Write(ctx, st2, "user", []fence.Entry{{Key: "user:3", Fields: []string{"id", "3"}, TTL: time.Hour}}); err != nil || w.Written != 1 {
		t.Fatalf("a warm begun before an unrelated pattern invalidation: %+v %v, want written", w, err)
	}
}

func TestPatternNeverDeletesQueueOrOwnKeys(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, nil)
	ctx := context.Background()
	own := []string{"asynq:{default}:pending", "asynq:servers", "cachekeeper:fence:{user:1}", "cachekeeper:tag:org:1", "{cachekeeper:inbox}:processing"}
	for _, k := range own {
		r.Client.Set(ctx, k, "x", 0)
	}
	r.Client.Set(ctx, "app:1", "x", 0)
	res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: "*"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || res.Internal != int64(len(own)) {
		t.Fatalf("result = %+v, want app:1 deleted and %d internal keys kept", res, len(own))
	}
	if n := r.Client.Exists(ctx, own...).Val(); n != int64(len(own)) {
		t.Fatalf("%d of %d internal keys left", n, len(own))
	}
}

func TestPatternHonoursRateCap(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, nil)
	ctx := context.Background()
	seed(t, r.Client, 1500, func(i int) string { return fmt.Sprintf("tmp:%d", i) })
	res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: "tmp:*", MaxKeysPerSecond: 1000})
	if err != nil || res.Deleted != 1500 {
		t.Fatalf("result = %+v, %v", res, err)
	}
	// 1,500 keys at 1,000 keys/s cannot take less than about 1.5 s.
	if res.Elapsed < time.Second {
		t.Fatalf("deleted 1500 keys in %s despite a cap of 1000 keys/s", res.Elapsed)
	}
}

func TestPatternOnEveryClusterMaster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	b := setup(t, cc, userCache)
	ctx := context.Background()
	seed(t, cc, 3000, func(i int) string { return fmt.Sprintf("user:%d", i) })
	seed(t, cc, 3000, func(i int) string { return fmt.Sprintf("page:%d", i) })
	seed(t, cc, 1000, func(i int) string { return fmt.Sprintf("keep:%d", i) })
	for _, p := range []string{"user:*", "page:*"} {
		res, err := b.inv.Pattern(ctx, invalidate.PatternOptions{Pattern: p})
		if err != nil || res.Deleted != 3000 {
			t.Fatalf("%s: result = %+v, %v; want 3000 deleted", p, res, err)
		}
	}
	var mu sync.Mutex
	left := map[string]int{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		for _, p := range []string{"keep:*", "user:*", "page:*"} {
			ks, err := c.Keys(ctx, p).Result() // test only: a tiny keyspace
			if err != nil {
				return err
			}
			mu.Lock()
			left[p] += len(ks)
			mu.Unlock()
		}
		return nil
	})
	if err != nil || left["keep:*"] != 1000 || left["user:*"] != 0 || left["page:*"] != 0 {
		t.Fatalf("keys left per pattern: %v (err %v), want the 1000 keep:* only", left, err)
	}
}
