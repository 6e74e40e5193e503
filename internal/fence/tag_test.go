package fence_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

func TestCaptureTagMovesMembersAndAdvancesTagFence(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	k := keys.Default()
	set, hold, tf := k.Tag("org:7"), k.TagHold("org:7", "job1"), k.TagFence("org:7")
	r.Client.SAdd(ctx, set, "user:1", "user:2")
	st, err := f.Begin(ctx) // a warm begins its read before the invalidation
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.CaptureTag(ctx, set, hold, tf)
	if err != nil || n != 2 {
		t.Fatalf("CaptureTag = %d, %v; want 2 members", n, err)
	}
	if r.Client.Exists(ctx, set).Val() != 0 {
		t.Fatal("tag set still exists after capture")
	}
	if got := r.Client.SMembers(ctx, hold).Val(); len(got) != 2 {
		t.Fatalf("hold set = %v", got)
	}
	if ttl := r.Client.PTTL(ctx, hold).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("hold TTL = %s", ttl)
	}
	// A retry merges what was tagged meanwhile with what it left.
	r.Client.SAdd(ctx, set, "user:3")
	if n, err := f.CaptureTag(ctx, set, hold, tf); err != nil || n != 3 {
		t.Fatalf("second CaptureTag = %d, %v; want 3", n, err)
	}
	// The warm that began before sees the tag as fenced; one that begins
	// after does not.
	fenced, err := f.FencedTags(ctx, st, []string{tf, k.TagFence("org:8")})
	if err != nil || !slices.Equal(fenced, []string{tf}) {
		t.Fatalf("FencedTags(old stamp) = %v, %v; want [%s]", fenced, err, tf)
	}
	st2, _ := f.Begin(ctx)
	if fenced, err := f.FencedTags(ctx, st2, []string{tf}); err != nil || len(fenced) != 0 {
		t.Fatalf("FencedTags(new stamp) = %v, %v; want none", fenced, err)
	}
}
