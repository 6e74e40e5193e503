package invalidate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// Literal keys, patterns and tag members that name internal keys are left
// alone (and counted in the guard), whoever built the request.
func TestInvalidationLeavesInternalKeysAlone(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, nil)
	ctx := context.Background()
	own := []string{"asynq:{default}:scheduled", "asynq:queues", "{cachekeeper:inbox}:dead", "jobs:inbox"}
	for _, k := range own {
		r.Client.Set(ctx, k, "x", 0)
	}
	r.Client.Set(ctx, "user:1", "x", 0)
	guard := &keys.Guard{Rule: keys.NewRule("cachekeeper:", "jobs:inbox")}
	gctx := keys.WithGuard(ctx, guard)

	n, err := b.inv.Keys(gctx, append([]string{"user:1"}, own...))
	if err != nil || n != 1 || guard.Skipped() != int64(len(own)) {
		t.Fatalf("Keys = %d, %v, skipped %d; want user:1 deleted and %d skipped", n, err, guard.Skipped(), len(own))
	}
	for _, p := range []string{"asynq:*", "{cachekeeper:inbox}*", "jobs:inbox"} {
		if _, err := b.inv.Pattern(gctx, invalidate.PatternOptions{Pattern: p}); !errors.Is(err, invalidate.ErrInvalidRequest) || !errors.Is(err, keys.ErrInternalKey) {
			t.Errorf("Pattern(%q) = %v, want a refusal", p, err)
		}
	}
	// A tag set whose members name internal keys (written by hand): the
	// members are skipped, the rest deleted.
	r.Client.SAdd(ctx, keys.Default().Tag("org:1"), "asynq:queues", "app:1")
	r.Client.Set(ctx, "app:1", "x", 0)
	res, err := b.inv.Tag(gctx, "org:1", "job1", 0)
	if err != nil || res.Deleted != 1 {
		t.Fatalf("Tag = %+v, %v", res, err)
	}
	if got := r.Client.Exists(ctx, own...).Val(); got != int64(len(own)) {
		t.Fatalf("%d of %d internal keys left", got, len(own))
	}
}
