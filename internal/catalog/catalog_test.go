package catalog_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/catalog"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// A kind stays known while a worker refreshes it; once none does, it
// expires and the next Publish drops it from the index.
func TestKindsExpireWithTheirWorkers(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	k := keys.Default()
	a := tasks.KindSpec{Kind: "app:a", Queue: "qa", Fields: []tasks.FieldSpec{{Name: "x", Type: "string", Required: true}}}
	b := tasks.KindSpec{Kind: "app:b", Queue: "qb"}
	if err := catalog.Publish(ctx, r.Client, k, []tasks.KindSpec{a}, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := catalog.Publish(ctx, r.Client, k, []tasks.KindSpec{b}, time.Hour); err != nil {
		t.Fatal(err)
	}
	known, err := catalog.Known(ctx, r.Client, k)
	if err != nil || len(known) != 2 || known[0].Kind != "app:a" || !slices.Equal(known[0].Fields, a.Fields) {
		t.Fatalf("known %+v, %v", known, err)
	}
	res := catalog.NewResolver(r.Client, k)
	res.CacheFor = 0
	if _, ok, err := res.Spec("app:a"); !ok || err != nil {
		t.Fatalf("resolver: app:a not found (%v)", err)
	}
	time.Sleep(1100 * time.Millisecond) // app:a's worker is gone: nobody refreshed it
	if _, ok, _ := catalog.Lookup(ctx, r.Client, k, "app:a"); ok {
		t.Fatal("app:a still known after its TTL")
	}
	if err := catalog.Publish(ctx, r.Client, k, []tasks.KindSpec{b}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if names := r.Client.SMembers(ctx, k.KindsIndex()).Val(); !slices.Equal(names, []string{"app:b"}) {
		t.Fatalf("index %v after a refresh, want only app:b", names)
	}
	if got := catalog.Names([]tasks.KindSpec{b}); got[len(got)-1] != "app:b" || !slices.Contains(got, tasks.KindWarm) {
		t.Fatalf("names %v", got)
	}
}
