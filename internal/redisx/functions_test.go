package redisx_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// leaseKeys are the keys of the protocol for one cache key.
type leaseKeys struct{ key, lease, wake, fence, cacheFence string }

func leaseKeysOf(key string) leaseKeys {
	k := keys.Default()
	return leaseKeys{key, k.Lease(key), k.LeaseWake(key), k.Fence(key), k.CacheFence("user", "")}
}

func get(t *testing.T, c *redisx.Caller, lk leaseKeys, token string) []any {
	t.Helper()
	v, err := c.Call(context.Background(), redisx.FuncGet, []string{lk.key, lk.lease, lk.wake}, token, 5000).Slice()
	if err != nil {
		t.Fatalf("ck1_get: %v", err)
	}
	return v
}

func fill(t *testing.T, c *redisx.Caller, lk leaseKeys, token, stamp string, maxAgeMS int, fields ...any) int64 {
	t.Helper()
	args := append([]any{token, stamp, maxAgeMS, 60000}, fields...)
	n, err := c.Call(context.Background(), redisx.FuncFill, []string{lk.key, lk.lease, lk.wake, lk.fence, lk.cacheFence}, args...).Int64()
	if err != nil {
		t.Fatalf("ck1_fill: %v", err)
	}
	return n
}

// The protocol of docs/read-protocol.md, run through FCALL after the library
// was loaded by the first call's "Function not found", and through EVALSHA on
// miniredis (no FUNCTION).
func TestLeaseProtocol(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(testing.TB) *testenv.Redis{"redis": testenv.NewRedis, "miniredis": testenv.NewMiniredis} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := start(t)
			ctx := context.Background()
			c := redisx.NewCaller(r.Client)
			lk := leaseKeysOf("user:42")

			g := get(t, c, lk, "a")
			if g[0].(int64) != 2 {
				t.Fatalf("first get = %v, want a lease {2, stamp}", g)
			}
			stamp := g[1].(string)
			if name == "redis" == c.UsesScripts() {
				t.Fatalf("uses scripts = %v on %s", c.UsesScripts(), name)
			}
			if g2 := get(t, c, lk, "a"); g2[0].(int64) != 2 || g2[1].(string) != stamp {
				t.Fatalf("the holder's second get = %v, want its own lease again", g2)
			}
			w := get(t, c, lk, "b")
			if w[0].(int64) != 3 || w[1].(int64) <= 0 || w[1].(int64) > 5000 {
				t.Fatalf("another reader's get = %v, want {3, wait_ms}", w)
			}
			get(t, c, lk, "c")
			if n := fill(t, c, lk, "a", stamp, 5000, "id", "42", "name", "Ada"); n != 1 {
				t.Fatalf("fill = %d, want 1 (written)", n)
			}
			if got := r.Client.LLen(ctx, lk.wake).Val(); got != 2 {
				t.Fatalf("wake list holds %d, want one per waiter (2)", got)
			}
			if r.Client.Exists(ctx, lk.lease).Val() != 0 {
				t.Fatal("the lease outlived its fill")
			}
			h := get(t, c, lk, "b")
			if h[0].(int64) != 1 || h[1].(int64) <= 0 || fmt.Sprint(h[2]) != "[id 42 name Ada]" {
				t.Fatalf("get after the fill = %v, want {1, pttl, [id 42 name Ada]}", h)
			}
			fmt.Printf("%s: lease %s, 2 waiters woken, hit %v\n", name, stamp, h)
		})
	}
}

// A fill is refused exactly when an invalidation (of the key or of its
// cache) happened after the grant, or when the grant is older than its
// max age; a refused fill still releases the lease.
func TestLeaseFillIsFenced(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	c := redisx.NewCaller(r.Client)
	for _, tc := range []struct {
		name string
		// between runs after the grant, before the fill.
		between func(lk leaseKeys)
		maxAge  int
		want    int64
	}{
		{"no invalidation", func(leaseKeys) {}, 5000, 1},
		{"key invalidated", func(lk leaseKeys) {
			redisx.FenceInvalidate.Run(ctx, r.Client, []string{lk.key, lk.fence}, 60000)
		}, 5000, 0},
		{"cache invalidated", func(lk leaseKeys) {
			redisx.FenceCacheAdvance.Run(ctx, r.Client, []string{lk.cacheFence}, 60000)
		}, 5000, 0},
		{"grant too old", func(leaseKeys) { time.Sleep(30 * time.Millisecond) }, 10, -1},
	} {
		lk := leaseKeysOf("user:" + strings.ReplaceAll(tc.name, " ", "_"))
		// An invalidation before the grant does not refuse the fill.
		redisx.FenceInvalidate.Run(ctx, r.Client, []string{lk.key, lk.fence}, 60000)
		r.Client.Del(ctx, lk.cacheFence)
		if tc.name == "no invalidation" {
			redisx.FenceCacheAdvance.Run(ctx, r.Client, []string{lk.cacheFence}, 60000)
		}
		g := get(t, c, lk, "holder")
		tc.between(lk)
		get(t, c, lk, "waiter")
		got := fill(t, c, lk, "holder", g[1].(string), tc.maxAge, "id", "1")
		cached := r.Client.Exists(ctx, lk.key).Val()
		t.Logf("%s: fill = %d, key cached = %d", tc.name, got, cached)
		if got != tc.want || (cached == 1) != (tc.want == 1) {
			t.Errorf("%s: fill = %d (key cached: %d), want %d", tc.name, got, cached, tc.want)
		}
		if r.Client.Exists(ctx, lk.lease).Val() != 0 || r.Client.LLen(ctx, lk.wake).Val() != 1 {
			t.Errorf("%s: the lease was not released or its waiter not woken", tc.name)
		}
	}
}

func TestLeaseReleaseAndTouch(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	c := redisx.NewCaller(r.Client)
	lk := leaseKeysOf("user:7")
	get(t, c, lk, "a")
	get(t, c, lk, "b")
	if n, err := c.Call(ctx, redisx.FuncRelease, []string{lk.lease, lk.wake}, "b").Int(); err != nil || n != 0 {
		t.Fatalf("release by a non-holder = %d, %v; want 0", n, err)
	}
	if n, err := c.Call(ctx, redisx.FuncRelease, []string{lk.lease, lk.wake}, "a").Int(); err != nil || n != 1 {
		t.Fatalf("release by the holder = %d, %v; want 1", n, err)
	}
	if r.Client.LLen(ctx, lk.wake).Val() != 1 {
		t.Fatal("the waiter was not woken")
	}
	if g := get(t, c, lk, "b"); g[0].(int64) != 2 {
		t.Fatalf("get after the release = %v, want a new lease", g)
	}
	if r.Client.LLen(ctx, lk.wake).Val() != 0 {
		t.Fatal("a grant must clear the wake list")
	}
	hot := keys.Default().Hot("user")
	for i := 0; i < 5; i++ {
		if err := c.Call(ctx, redisx.FuncTouch, []string{hot}, strconv.Itoa(i), 3).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ids := r.Client.ZRange(ctx, hot, 0, -1).Val()
	if fmt.Sprint(ids) != "[2 3 4]" || r.Client.PTTL(ctx, hot).Val() <= 0 {
		t.Fatalf("hot set = %v (ttl %v), want the 3 latest ids with a TTL", ids, r.Client.PTTL(ctx, hot).Val())
	}
}

// The worker loads the library on every master; a newer revision is kept, an
// older one replaced.
func TestLoadLibraryOnEveryMaster(t *testing.T) {
	t.Parallel()
	cl := testenv.NewCluster(t, 3, 0)
	ctx := context.Background()
	res, err := redisx.LoadLibrary(ctx, cl.Client)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("loaded on %d masters, want 3: %v", len(res), res)
	}
	for _, r := range res {
		if r.Action != "loaded" {
			t.Fatalf("%v: want loaded", r)
		}
	}
	again, err := redisx.LoadLibrary(ctx, cl.Client)
	if err != nil || len(again) != 3 || again[0].Action != "kept" || again[0].Revision != redisx.LibraryRevision {
		t.Fatalf("second load = %v, %v; want kept at revision %d", again, err, redisx.LibraryRevision)
	}
	// Every slot answers ck1_get, through the cluster client, by name.
	c := redisx.NewCaller(cl.Client)
	for i := 0; i < 30; i++ {
		lk := leaseKeysOf(fmt.Sprintf("user:%d", i))
		lk.cacheFence = keys.Default().CacheFence("user", keys.SlotTag(keys.Slot(lk.key)))
		g := get(t, c, lk, "t")
		if g[0].(int64) != 2 {
			t.Fatalf("%s: get = %v", lk.key, g)
		}
		if n := fill(t, c, lk, "t", g[1].(string), 5000, "id", strconv.Itoa(i)); n != 1 {
			t.Fatalf("%s: fill = %d", lk.key, n)
		}
	}
	if c.UsesScripts() {
		t.Fatal("the cluster fell back to scripts")
	}
	// An older revision is replaced.
	old := strings.Replace(redisx.LibraryText(), "return {1, "+strconv.Itoa(redisx.LibraryRevision)+"}", "return {1, 0}", 1)
	node := redis.NewClient(&redis.Options{Addr: cl.Addrs[0]})
	defer node.Close()
	if err := node.FunctionLoadReplace(ctx, old).Err(); err != nil {
		t.Fatal(err)
	}
	res, err = redisx.LoadLibrary(ctx, cl.Client)
	if err != nil {
		t.Fatal(err)
	}
	replaced := 0
	for _, r := range res {
		if r.Action == "replaced" && r.Revision == 0 {
			replaced++
		}
	}
	if replaced != 1 {
		t.Fatalf("after downgrading one master: %v; want exactly one replaced", res)
	}
}
