package invalidate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestTagDeletesMembersFencedAndTheSet(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	k := keys.Default()
	n := 2500 // several SSCAN pages
	var members []any
	for i := 0; i < n; i++ {
		members = append(members, fmt.Sprintf("user:%d", i))
	}
	r.Client.SAdd(ctx, k.Tag("org:7"), members...)
	seed(t, r.Client, n-500, func(i int) string { return fmt.Sprintf("user:%d", i) }) // 500 already expired
	r.Client.Set(ctx, "user:99999", "other org", 0)
	st, _ := b.fence.Begin(ctx)
	res, err := b.inv.Tag(ctx, "org:7", "job-1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if res.Members != int64(n) || res.Deleted != int64(n-500) || len(res.Sample) != 3 {
		t.Fatalf("result = %+v, want %d members, %d deleted, 3 sampled", res, n, n-500)
	}
	if left := r.Client.Exists(ctx, members[0].(string), members[n-501].(string)).Val(); left != 0 {
		t.Fatalf("%d member keys left", left)
	}
	if r.Client.Exists(ctx, "user:99999").Val() != 1 {
		t.Fatal("a key not carrying the tag was deleted")
	}
	if r.Client.Exists(ctx, k.Tag("org:7"), k.TagHold("org:7", "job-1")).Val() != 0 {
		t.Fatal("tag set or hold set left behind")
	}
	w, err := b.fence.Write(ctx, st, "user", []fence.Entry{{Key: "user:10", Fields: []string{"id", "10"}, TTL: time.Hour}})
	if err != nil || w.Written != 0 {
		t.Fatalf("a warm that read before the tag invalidation wrote a member back: %+v %v", w, err)
	}
	if fenced, _ := b.fence.FencedTags(ctx, st, []string{k.TagFence("org:7")}); len(fenced) != 1 {
		t.Fatal("tag fence not advanced")
	}
}

func TestTagRetryFinishesWhatAnInterruptedRunLeft(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	k := keys.Default()
	// A first run captured user:1 and user:2 and died; user:3 was tagged since.
	r.Client.SAdd(ctx, k.TagHold("org:7", "job-1"), "user:1", "user:2")
	r.Client.SAdd(ctx, k.Tag("org:7"), "user:3")
	seed(t, r.Client, 4, func(i int) string { return fmt.Sprintf("user:%d", i) })
	res, err := b.inv.Tag(ctx, "org:7", "job-1", 0)
	if err != nil || res.Members != 3 || res.Deleted != 3 {
		t.Fatalf("retry = %+v, %v; want the 3 members deleted", res, err)
	}
	if r.Client.Exists(ctx, "user:0").Val() != 1 || r.Client.Exists(ctx, "user:1", "user:2", "user:3").Val() != 0 {
		t.Fatal("wrong keys deleted")
	}
	// An unknown tag is not an error.
	if res, err := b.inv.Tag(ctx, "org:404", "", 10); err != nil || res.Members != 0 {
		t.Fatalf("unknown tag: %+v, %v", res, err)
	}
}

func TestPruneTagRemovesOnlyMembersWhoseKeyIsGone(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	k := keys.Default()
	var members []any
	for i := 0; i < 1200; i++ {
		members = append(members, fmt.Sprintf("user:%d", i))
	}
	r.Client.SAdd(ctx, k.Tag("org:1"), members...)
	r.Client.SAdd(ctx, k.Tag("org:2"), "user:5", "user:5000")
	seed(t, r.Client, 300, func(i int) string { return fmt.Sprintf("user:%d", i) })
	r.Client.Set(ctx, k.Tag("not-a-set"), "x", 0) // matches the tag pattern, wrong type
	// A warm that added user:900 to its tag set and read the database
	// before the prune, and writes after it.
	st, _ := b.fence.Begin(ctx)

	res, err := b.inv.PruneTags(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sets != 2 || res.Members != 1202 || res.Pruned != 901 {
		t.Fatalf("PruneTags = %+v, want 2 sets, 1202 members, 901 pruned", res)
	}
	if n := r.Client.SCard(ctx, k.Tag("org:1")).Val(); n != 300 {
		t.Fatalf("org:1 has %d members, want the 300 whose key exists", n)
	}
	if got := r.Client.SMembers(ctx, k.Tag("org:2")).Val(); len(got) != 1 || got[0] != "user:5" {
		t.Fatalf("org:2 = %v", got)
	}
	if r.Client.Get(ctx, k.Tag("not-a-set")).Val() != "x" {
		t.Fatal("a non-set key under the tag prefix was touched")
	}
	// The pruned member's key must not come back outside its tag set.
	w, err := b.fence.Write(ctx, st, "user", []fence.Entry{{Key: "user:900", Fields: []string{"id", "900"}, TTL: time.Hour}})
	if err != nil || w.Written != 0 {
		t.Fatalf("a key pruned from its tag set was written afterwards: %+v %v", w, err)
	}
	// Pruning again finds nothing to do.
	if res, err := b.inv.PruneTags(ctx, 100000); err != nil || res.Pruned != 0 {
		t.Fatalf("second prune = %+v, %v", res, err)
	}
}

func TestPruneTagsIfDueRunsOncePerInterval(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, userCache)
	ctx := context.Background()
	k := keys.Default()
	r.Client.SAdd(ctx, k.Tag("org:1"), "user:1", "user:2")
	res, ran, err := b.inv.PruneTagsIfDue(ctx, time.Hour, 0)
	if err != nil || !ran || res.Pruned != 2 {
		t.Fatalf("first = %+v, ran %v, %v; want 2 pruned", res, ran, err)
	}
	r.Client.SAdd(ctx, k.Tag("org:1"), "user:3")
	if _, ran, err := b.inv.PruneTagsIfDue(ctx, time.Hour, 0); err != nil || ran {
		t.Fatalf("second within the interval ran=%v err=%v, want skipped", ran, err)
	}
	if ttl := r.Client.PTTL(ctx, k.TagPruneMarker()).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("marker TTL = %s", ttl)
	}
}
