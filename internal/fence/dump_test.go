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
			res, err := f.Write(ctx, st, []fence.Entry{
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
	res, err := f.Write(ctx, st, entries)
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
