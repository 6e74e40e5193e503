package fence_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func setup(t *testing.T, ttl time.Duration) (*fence.Fencer, *testenv.Redis) {
	t.Helper()
	r := testenv.NewRedis(t)
	f, err := fence.New(r.Client, keys.Default(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return f, r
}

func TestWriteReplacesWholeHashWithTTL(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	r.Client.HSet(ctx, "user:1", "id", "1", "email", "old@x", "nickname", "gone")
	st, err := f.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Write(ctx, st, "", []fence.Entry{
		{Key: "user:1", Fields: []string{"id", "1", "email", "new@x"}, TTL: time.Hour},
		{Key: "user:2", Fields: []string{"id", "2", "email", "b@x"}, TTL: 30 * time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 2 || len(res.Skipped) != 0 {
		t.Fatalf("result = %+v", res)
	}
	got := r.Client.HGetAll(ctx, "user:1").Val()
	if len(got) != 2 || got["email"] != "new@x" {
		t.Fatalf("user:1 = %v, want exactly id and the new email (stale field removed)", got)
	}
	if ttl := r.Client.TTL(ctx, "user:2").Val(); ttl <= 29*time.Minute || ttl > 30*time.Minute {
		t.Fatalf("TTL = %s", ttl)
	}
}

func TestInvalidationAfterBeginRefusesWrite(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	st, _ := f.Begin(ctx) // warm starts its database read
	n, err := f.Invalidate(ctx, []string{"user:1"})
	if err != nil || n != 0 {
		t.Fatalf("Invalidate = %d, %v", n, err)
	}
	res, err := f.Write(ctx, st, "", []fence.Entry{
		{Key: "user:1", Fields: []string{"id", "1", "email", "stale@x"}, TTL: time.Hour},
		{Key: "user:2", Fields: []string{"id", "2"}, TTL: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 1 || len(res.Skipped) != 1 || res.Skipped[0] != "user:1" {
		t.Fatalf("result = %+v, want user:1 skipped and user:2 written", res)
	}
	if r.Client.Exists(ctx, "user:1").Val() != 0 {
		t.Fatal("stale value written after the invalidation")
	}
	// A warm that begins after the invalidation may write.
	st2, _ := f.Begin(ctx)
	res, err = f.Write(ctx, st2, "", []fence.Entry{{Key: "user:1", Fields: []string{"id", "1"}, TTL: time.Hour}})
	if err != nil || res.Written != 1 {
		t.Fatalf("later warm: %+v %v", res, err)
	}
}

func TestInvalidateDeletesAndFenceIncreases(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	r.Client.HSet(ctx, "user:9", "id", "9")
	n, err := f.Invalidate(ctx, []string{"user:9", "user:10"})
	if err != nil || n != 1 {
		t.Fatalf("Invalidate = %d, %v", n, err)
	}
	fk := keys.Default().Fence("user:9")
	first, _ := r.Client.Get(ctx, fk).Int64()
	_, _ = f.Invalidate(ctx, []string{"user:9"})
	second, _ := r.Client.Get(ctx, fk).Int64()
	if second <= first {
		t.Fatalf("fence did not increase: %d then %d", first, second)
	}
	if ttl := r.Client.PTTL(ctx, fk).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("fence TTL = %s", ttl)
	}
}

// TestInvalidateFenceAheadOfClock: a fence already at or past the server
// clock (a clock stepped back, or two invalidations in one microsecond) is
// still advanced, and a key named twice in one batch gets a fence above its
// first; a batch of more than 1,000 keys deletes them all.
func TestInvalidateFenceAheadOfClock(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	fk := keys.Default().Fence("user:7")
	ahead := time.Now().Add(time.Hour).UnixMicro()
	r.Client.Set(ctx, fk, ahead, time.Hour)
	if _, err := f.Invalidate(ctx, []string{"user:7"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Client.Get(ctx, fk).Int64(); got != ahead+1 {
		t.Fatalf("fence ahead of the clock: %d, want %d", got, ahead+1)
	}
	dk := keys.Default().Fence("user:8")
	if _, err := f.Invalidate(ctx, []string{"user:8", "user:8"}); err != nil {
		t.Fatal(err)
	}
	first, _ := r.Client.Get(ctx, dk).Int64()
	if _, err := f.Invalidate(ctx, []string{"user:8"}); err != nil {
		t.Fatal(err)
	}
	if second, _ := r.Client.Get(ctx, dk).Int64(); second <= first || first == 0 {
		t.Fatalf("fence of a key named twice: %d then %d", first, second)
	}
	many := make([]string, 2500)
	pipe := r.Client.Pipeline()
	for i := range many {
		many[i] = "user:m" + strconv.Itoa(i)
		pipe.HSet(ctx, many[i], "id", i)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := f.Invalidate(ctx, many)
	if err != nil || n != len(many) {
		t.Fatalf("Invalidate of %d keys = %d, %v", len(many), n, err)
	}
	if left := r.Client.Exists(ctx, many...).Val(); left != 0 {
		t.Fatalf("%d keys left after the invalidation", left)
	}
}

func TestDeleteEntryAndTooOld(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Second)
	ctx := context.Background()
	r.Client.HSet(ctx, "user:3", "id", "3")
	st, _ := f.Begin(ctx)
	res, err := f.Write(ctx, st, "", []fence.Entry{{Key: "user:3"}})
	if err != nil || res.Deleted != 1 || r.Client.Exists(ctx, "user:3").Val() != 0 {
		t.Fatalf("delete entry: %+v %v", res, err)
	}
	time.Sleep(1100 * time.Millisecond) // older than the fence TTL
	res, err = f.Write(ctx, st, "", []fence.Entry{{Key: "user:3", Fields: []string{"id", "3"}, TTL: time.Hour}})
	if err != nil || !res.TooOld || res.Written != 0 {
		t.Fatalf("stale stamp: %+v %v", res, err)
	}
}

func TestScriptReloadAfterFlush(t *testing.T) {
	t.Parallel()
	f, r := setup(t, time.Hour)
	ctx := context.Background()
	st, _ := f.Begin(ctx)
	if _, err := f.Write(ctx, st, "", []fence.Entry{{Key: "user:1", Fields: []string{"id", "1"}, TTL: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	r.Client.ScriptFlush(ctx)
	if _, err := f.Write(ctx, st, "", []fence.Entry{{Key: "user:1", Fields: []string{"id", "1"}, TTL: time.Hour}}); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
}
