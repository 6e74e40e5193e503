package cache

import "sync/atomic"

// Stats counts what a Reader's Gets did since it was made.
type Stats struct {
	// Hits are reads answered from the cache.
	Hits int64
	// Loads are loads run under a lease (each followed by a fill).
	Loads int64
	// Waits are times a reader waited for another's fill.
	Waits int64
	// Filled and Refused count fills written and refused (by a fence, or a
	// lease older than LeaseTTL).
	Filled, Refused int64
	// Unfilled are loads run without a lease after MaxWait (not cached).
	Unfilled int64
	// Touches are hits recorded for refresh-ahead; EarlyRefreshes are
	// rewarms asked for by XFetch.
	Touches, EarlyRefreshes int64
}

type counters struct {
	hits, loads, waits, filled, refused, unfilled, touches, early atomic.Int64
}

// Stats returns the Reader's counts.
func (r *Reader) Stats() Stats {
	c := &r.count
	return Stats{Hits: c.hits.Load(), Loads: c.loads.Load(), Waits: c.waits.Load(), Filled: c.filled.Load(),
		Refused: c.refused.Load(), Unfilled: c.unfilled.Load(), Touches: c.touches.Load(), EarlyRefreshes: c.early.Load()}
}
