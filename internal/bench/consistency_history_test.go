package bench

import (
	"testing"
	"time"
)

func TestHistoryFigures(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	h := newHistory()
	h.commit("item:1", PathStream, 1, at(0))
	h.commit("item:1", PathStream, 2, at(100))
	h.commit("app:2", PathClient, 1, at(0))
	h.read("item:1", PathStream, 0, at(10))  // v1 committed 10ms before: stale 10ms
	h.read("item:1", PathStream, 1, at(50))  // newest: fresh
	h.read("item:1", PathStream, 0, at(130)) // v1 committed 130ms before: stale 130ms
	h.read("item:1", PathStream, 2, at(130)) // fresh
	h.read("app:2", PathClient, 1, at(5))    // fresh
	h.read("app:2", PathClient, 0, at(0))    // v1 not committed before the read began: fresh
	h.outage(at(120), at(125))               // counts until 1s after: covers the 130ms read
	f := h.figures()
	s := f[PathStream]
	if s.Writes != 2 || s.Reads != 4 || s.StaleReads != 2 || s.MaxMs != 130 || s.MaxOutsideOutagesMs != 10 {
		t.Fatalf("stream figures: %+v", *s)
	}
	c := f[PathClient]
	if c.Writes != 1 || c.Reads != 2 || c.StaleReads != 0 || c.MaxMs != 0 {
		t.Fatalf("client figures: %+v", *c)
	}
	t.Logf("stream %+v", *s)
}
