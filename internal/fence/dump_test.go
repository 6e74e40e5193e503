package fence_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// Writes go by RESTORE of a DUMP payload on a real server, and by HSET on a
// server that does not load the payload as a hash (miniredis); the cached
// hash is the same either way.
func TestWriteOnRealRedisAndMiniredis(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 9000) // 18,000 bytes: a 32-bit length in the payload
	mid := strings.Repeat("m", 300)   // a 14-bit length
	for name, r := range map[string]*testenv.Redis{"redis-server": testenv.NewRedis(t), "miniredis": testenv.NewMiniredis(t)} {
		t.Run(name, func(t *testing.T) {
			f, err := fence.New(r.Client, keys.Default(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			r.Client.HSet(ctx, "user:1", "stale", "x")
			st, err := f.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.Write(ctx, st, "", []fence.Entry{
				{Key: "user:1", Fields: []string{"id", "1", "bio", long, "empty", ""}, TTL: time.Hour},
				{Key: "user:2", Fields: []string{"id", "2", "note", mid}, TTL: time.Minute},
			})
			if err != nil || res.Written != 2 {
				t.Fatalf("Write = %+v, %v", res, err)
			}
			got := r.Client.HGetAll(ctx, "user:1").Val()
			if len(got) != 3 || got["bio"] != long || got["empty"] != "" || got["id"] != "1" {
				t.Fatalf("user:1 has %d fields (stale one kept? %v)", len(got), got["stale"])
			}
			if got := r.Client.HGet(ctx, "user:2", "note").Val(); got != mid {
				t.Fatalf("user:2 note has %d bytes", len(got))
			}
			if typ := r.Client.Type(ctx, "user:2").Val(); typ != "hash" {
				t.Fatalf("user:2 is a %s", typ)
			}
			if ttl := r.Client.PTTL(ctx, "user:2").Val(); ttl <= 59*time.Second || ttl > time.Minute {
				t.Fatalf("user:2 TTL = %s", ttl)
			}
			if r.Real {
				// The probe and the two keys: one RESTORE each, no HSET.
				stats := r.Client.Info(ctx, "commandstats").Val()
				if !strings.Contains(stats, "cmdstat_restore:calls=3,") || strings.Contains(stats, "cmdstat_hset:calls=2,") {
					t.Fatalf("writes did not go by RESTORE:\n%s", stats)
				}
			}
		})
	}
}

// On a cluster every master is probed and each slot gets its own script;
// the fence still refuses a write invalidated after the stamp.
func TestWriteOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	f, err := fence.New(cc, keys.Default(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := f.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Invalidate(ctx, []string{"user:7"}); err != nil {
		t.Fatal(err)
	}
	var entries []fence.Entry
	for i := 0; i < 50; i++ {
		entries = append(entries, fence.Entry{Key: "user:" + strconv.Itoa(i), Fields: []string{"id", strconv.Itoa(i)}, TTL: time.Hour})
	}
	res, err := f.Write(ctx, st, "", entries)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 49 || len(res.Skipped) != 1 || res.Skipped[0] != "user:7" {
		t.Fatalf("result = %+v, want 49 written and user:7 skipped", res)
	}
	for i := 0; i < 50; i++ {
		k := "user:" + strconv.Itoa(i)
		got := cc.HGet(ctx, k, "id").Val()
		if (i == 7) != (got == "") || (i != 7 && got != strconv.Itoa(i)) {
			t.Fatalf("%s id = %q", k, got)
		}
	}
}

// TestCacheFence: after FenceCaches every write of the cache whose stamp is
// older is refused, on any key (in every slot of a cluster, which has a copy
// of the fence per slot); writes of another cache, or begun after, go
// through.
func TestCacheFence(t *testing.T) {
	t.Parallel()
	single := testenv.NewRedis(t).Client
	cluster := scantest.NewCluster(t)
	for name, rdb := range map[string]redis.UniversalClient{"single": single, "cluster": cluster} {
		t.Run(name, func(t *testing.T) {
			f, err := fence.New(rdb, keys.Default(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var names []string
			for i := 0; i < 40; i++ {
				k := "user:" + strconv.Itoa(i)
				names = append(names, k)
				rdb.HSet(ctx, k, "id", i)
			}
			before, err := f.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.FenceCaches(ctx, []string{"user"}); err != nil {
				t.Fatal(err)
			}
			var stale []fence.Entry
			for i := 0; i < 40; i += 3 {
				stale = append(stale, fence.Entry{Key: names[i], Fields: []string{"id", "stale"}, TTL: time.Hour})
			}
			res, err := f.Write(ctx, before, "user", stale)
			if err != nil || res.Written != 0 || len(res.Skipped) != len(stale) {
				t.Fatalf("a write of the cache begun before the invalidation: %+v %v, want all %d skipped", res, err, len(stale))
			}
			if res, err := f.Write(ctx, before, "account", stale[:1]); err != nil || res.Written != 1 {
				t.Fatalf("another cache's write: %+v %v, want it written", res, err)
			}
			after, _ := f.Begin(ctx)
			if res, err := f.Write(ctx, after, "user", stale); err != nil || res.Written != len(stale) {
				t.Fatalf("a write begun after the invalidation: %+v %v, want all written", res, err)
			}
		})
	}
}
