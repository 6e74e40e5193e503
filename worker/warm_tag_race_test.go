package worker_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// A warm reads a row whose key is in no tag set yet; the application changes
// the row and invalidates the row's tag (the set is captured empty of that
// key); the warm then adds the key to the tag set and writes. The key's own
// fence never moved, so only the tag's fence can refuse the stale value.
func TestTagInvalidationDuringWarmLeavesNoStaleKey(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	insertUser(t, db, 4, "v1@x", "Ann") // org_id 4 % 3 = 1
	gate := rand.Int64N(1<<31-1) + 1
	cs := gatedSpec(t, db, gate)
	cs.ByIDs = "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?) AND gate()"
	cs.All = ""
	cs.Tags = []string{"org:{org_id}"}
	b := warmSetup(t, db, true, func(c *config.Config) { c.Caches = map[string]config.CacheSpec{"user": cs} })
	ctx := context.Background()
	rc := b.redis.Client

	waitBlocked, open := holdGate(t, db, gate)
	info, err := b.client.WarmCacheIDs(ctx, "user", []string{"4"}, tasks.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitBlocked()
	if _, err := db.Exec("UPDATE users SET email = 'v2@x' WHERE id = 4"); err != nil {
		t.Fatal(err)
	}
	b.runTask(t, &tasks.InvalidateTagArgs{Tag: "org:1"})
	open()
	b.waitTask(t, info, 10*time.Second)
	if got := rc.HGet(ctx, "user:4", "email").Val(); got == "v1@x" {
		t.Fatalf("stale value written after the tag was invalidated: user:4 = %v", rc.HGetAll(ctx, "user:4").Val())
	}
	b.runTask(t, &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"4"}})
	if got := rc.HGet(ctx, "user:4", "email").Val(); got != "v2@x" {
		t.Fatalf("a later warm wrote %q, want v2@x", got)
	}
}
