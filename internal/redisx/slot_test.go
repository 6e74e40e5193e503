package redisx_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestSplitBySlotOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	var all []string
	for i := 0; i < 200; i++ {
		all = append(all, fmt.Sprintf("rl:%d", i))
	}
	total := 0
	for _, g := range redisx.SplitBySlot(cc, all) {
		// Every group must be usable by a multi-key command.
		if err := cc.Exists(ctx, g...).Err(); err != nil {
			t.Fatalf("multi-key EXISTS on one slot group: %v", err)
		}
		total += len(g)
	}
	if total != len(all) {
		t.Fatalf("groups hold %d keys, want %d", total, len(all))
	}
}

func TestSplitBySlotSingleNode(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	list := []string{"a", "b", "c"}
	groups := redisx.SplitBySlot(r.Client, list)
	if len(groups) != 1 || !slices.Equal(groups[0], list) {
		t.Fatalf("groups = %v, want one group with every key", groups)
	}
	if redisx.SplitBySlot(r.Client, nil) != nil {
		t.Fatal("no keys must give no group")
	}
}

func TestGroupBySlotKeepsOrderAndHashTags(t *testing.T) {
	t.Parallel()
	type item struct{ key string }
	items := []item{{"{user:1}:a"}, {"x"}, {"{user:1}:b"}, {"y"}, {"{user:1}"}}
	groups := redisx.GroupBySlot(items, func(i item) string { return i.key })
	var got [][]string
	for _, g := range groups {
		var ks []string
		for _, it := range g {
			if keys.Slot(it.key) != keys.Slot(g[0].key) {
				t.Fatalf("group %v mixes slots", g)
			}
			ks = append(ks, it.key)
		}
		got = append(got, ks)
	}
	if len(got) == 0 || !slices.Equal(got[0], []string{"{user:1}:a", "{user:1}:b", "{user:1}"}) {
		t.Fatalf("first group = %v, want the three keys tagged {user:1} in order", got)
	}
	n := 0
	for _, g := range got {
		n += len(g)
	}
	if n != len(items) {
		t.Fatalf("groups hold %d items, want %d", n, len(items))
	}
}
