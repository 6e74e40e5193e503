package keys

// The coalesced invalidations of one cache (tasks.Client.Invalidate, inbox
// entries of one cache's ids) live in four keys that share a cluster slot
// (the cache name is their hash tag), like the coalesced warms':
//
//   - InvalidatePending, a sorted set of the ids waiting to be invalidated,
//     each scored by the request's sequence number;
//   - InvalidateSeq, the counter those sequence numbers come from;
//   - InvalidateDrain, the lease of the worker deleting the pending ids;
//   - InvalidateWake, a list holding at most one token, pushed when ids are
//     added, on which the workers block (BLPOP) instead of polling.

// InvalidatePending is the sorted set of ids of cache waiting to be invalidated.
func (k Keys) InvalidatePending(cache string) string { return k.invalidate(cache) + ":pending" }

// InvalidateSeq is the request counter of cache's pending invalidations.
func (k Keys) InvalidateSeq(cache string) string { return k.invalidate(cache) + ":seq" }

// InvalidateDrain is the lease of the worker draining cache's pending invalidations.
func (k Keys) InvalidateDrain(cache string) string { return k.invalidate(cache) + ":drain" }

// InvalidateWake is the list the workers block on for cache's pending invalidations.
func (k Keys) InvalidateWake(cache string) string { return k.invalidate(cache) + ":wake" }

func (k Keys) invalidate(cache string) string { return k.prefix + "invalidate:{" + cache + "}" }
