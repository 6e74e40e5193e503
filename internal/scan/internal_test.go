package scan_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// A walk never delivers internal keys unless Internal is set; those left
// out are counted in the context's guard and given to OnInternal.
func TestEachSkipsInternalKeys(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	internal := []string{"asynq:{default}:scheduled", "asynq:queues", "cachekeeper:fence:{a:1}", "{cachekeeper:inbox}:dead", "ck:tag:x", "{jobs:inbox}:processing"}
	app := []string{"a:1", "a:2", "ab", "session:1"}
	for _, k := range append(append([]string{}, internal...), app...) {
		r.Client.Set(ctx, k, "x", 0)
	}
	guard := &keys.Guard{Rule: keys.NewRule("ck:", "jobs:inbox")}
	var told atomic.Int64
	var got []string
	_, err := scan.Each(keys.WithGuard(ctx, guard), r.Client, scan.Options{OnInternal: func(n int) { told.Add(int64(n)) }},
		func(_ context.Context, batch []string) error {
			got = append(got, batch...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(app) || guard.Skipped() != int64(len(internal)) || told.Load() != int64(len(internal)) {
		t.Fatalf("delivered %v, guard skipped %d, OnInternal told %d; want the %d application keys and %d skipped",
			got, guard.Skipped(), told.Load(), len(app), len(internal))
	}
	for _, k := range got {
		if guard.Rule.Internal(k) {
			t.Fatalf("internal key %q delivered", k)
		}
	}

	// Without a guard the default rule applies: ck: is not protected.
	seen, _, _ := collect(t, r.Client, scan.Options{})
	if _, ok := seen["ck:tag:x"]; !ok || len(seen) != len(app)+2 {
		t.Fatalf("default rule walk saw %v", seen)
	}
	// Internal walks everything (cachekeeper's maintenance of its own keys).
	all, _, _ := collect(t, r.Client, scan.Options{Internal: true})
	if len(all) != len(app)+len(internal) {
		t.Fatalf("Internal walk saw %d keys, want %d", len(all), len(app)+len(internal))
	}
}
