package scheduler_test

import (
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/cachekeeper/cachekeeper/scheduler" // external test: testenv imports config, which imports scheduler

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestReload(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	rep := startReplica(t, r, clock, []EntryConfig{notifyEntry("a", "@every 1s"), notifyEntry("gone", "@every 1s")})
	step := func(n int) {
		for i := 0; i < n; i++ {
			waitIdle(t, clock, 1)
			clock.Advance(time.Second)
		}
		waitIdle(t, clock, 1)
	}
	step(2) // t0+1, t0+2
	oldA := rep.s.Entries()[0]

	// A broken configuration is refused and the old entries keep running.
	broken := []EntryConfig{notifyEntry("a", "@every 1s"), {Name: "b", Schedule: "@every 1s", Kind: "cache:warm_al"}}
	err := rep.s.Reload(broken)
	if err == nil || !strings.Contains(err.Error(), "schedule.b.kind") || !strings.Contains(err.Error(), "2 running entries stay") {
		t.Fatalf("Reload(broken) = %v, want an error naming schedule.b.kind and keeping 2 entries", err)
	}
	if got := rep.s.Entries(); len(got) != 2 || got[1].Name != "gone" {
		t.Fatalf("entries after a refused reload = %v, want the old a and gone", names(got))
	}
	step(1) // t0+3

	// A changed schedule and arguments for a, a new b, gone removed.
	newA := EntryConfig{Name: "a", Schedule: "*/5 * * * * *", Kind: "notify:publish", Args: map[string]any{"channel": "ticks", "message": "changed"}}
	if err := rep.s.Reload([]EntryConfig{newA, notifyEntry("b", "@every 2s")}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	waitReloaded(t, rep.s)
	step(7) // t0+4 .. t0+10
	a2, b := rep.s.Entries()[0], rep.s.Entries()[1]
	if a2.Series == oldA.Series {
		t.Fatal("changed arguments must start a new series")
	}
	want := append(tickIDs(oldA.Series, t0.Add(1*time.Second), t0.Add(2*time.Second), t0.Add(3*time.Second)),
		tickIDs(a2.Series, t0.Add(5*time.Second), t0.Add(10*time.Second))...)
	want = append(want, tickIDs(b.Series, t0.Add(4*time.Second), t0.Add(6*time.Second), t0.Add(8*time.Second), t0.Add(10*time.Second))...)
	var goneIDs []string
	for _, id := range taskIDs(t, r, "default") {
		if strings.HasPrefix(id, "schedule:gone:") {
			goneIDs = append(goneIDs, id)
		}
	}
	if len(goneIDs) != 3 {
		t.Fatalf("removed entry made tasks %v, want exactly its 3 ticks before the reload", goneIDs)
	}
	got := taskIDs(t, r, "default")
	got = without(got, goneIDs)
	if !equalStrings(got, sortedCopy(want)) {
		t.Fatalf("tasks after reload:\n got %v\nwant %v", got, sortedCopy(want))
	}
}

func TestRunNow(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	s, err := New(Config{Entries: []EntryConfig{notifyEntry("n", "@every 1s")}}, r.Client, quietLogger(), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first, err := s.RunNow(ctx, "n")
	if err != nil {
		t.Fatalf("RunNow: %v", err)
	}
	second, err := s.RunNow(ctx, "n")
	if err != nil {
		t.Fatalf("second RunNow: %v", err)
	}
	e := s.Entries()[0]
	if first.ID == second.ID || !strings.HasPrefix(first.ID, e.Series+":now:") || first.Queue != "default" {
		t.Fatalf("RunNow ids %q, %q in %s: want two distinct %s:now:... ids in default", first.ID, second.ID, first.Queue, e.Series)
	}
	// A tick in the same second is not blocked by the on-demand runs.
	s.FireForTest(ctx, e, clock.Now())
	if got := taskIDs(t, r, "default"); len(got) != 3 {
		t.Fatalf("tasks = %v, want the two on-demand runs and the tick", got)
	}
	if _, err := s.RunNow(ctx, "nope"); !errors.Is(err, ErrUnknownEntry) {
		t.Fatalf("RunNow(nope) = %v, want ErrUnknownEntry", err)
	}
}

func TestRunTwiceIsRefused(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	clock := NewFakeClock(t0)
	rep := startReplica(t, r, clock, []EntryConfig{notifyEntry("x", "@every 1s")})
	waitIdle(t, clock, 1)
	if err := rep.s.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

func names(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func without(all, drop []string) []string {
	skip := map[string]bool{}
	for _, d := range drop {
		skip[d] = true
	}
	var out []string
	for _, s := range all {
		if !skip[s] {
			out = append(out, s)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
