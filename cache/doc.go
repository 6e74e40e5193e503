// Package cache is the application's read path: Get a cached object by cache
// name and id, and on a miss load it so that a burst of readers costs the
// database one query and no fill can put back a value older than an
// invalidation.
//
// A Reader follows the read protocol of docs/read-protocol.md (the same
// Redis functions any language calls):
//
//   - Single flight in the process: concurrent Gets of one key share one
//     call to Redis and at most one load.
//   - Leases across processes: on a miss, one reader of the whole fleet is
//     granted the key's lease and loads it; the others wait for its fill
//     (woken at once through the key's wake list) and then read the value.
//   - Fenced fills: the lease holder's write is refused when the key, or its
//     whole cache, was invalidated after the lease was granted, exactly like
//     the worker's warms.
//   - Loading by the cache spec: the cache's by_ids query for the one id,
//     rendered the way the worker renders it (the same bytes), or a loader of
//     the caller's (GetWith).
//   - Early refresh (XFetch, "Optimal Probabilistic Cache Stampede
//     Prevention", VLDB 2015): a hit close to expiry asks, with a probability
//     that grows as expiry nears, the worker for a fenced rewarm of the key
//     (a cache:warm job), so the request itself never queries for it.
//   - Hit sampling: for caches with refresh_ahead enabled, a sample of hits is
//     recorded so that the worker rewarms keys that are being read before they
//     expire.
package cache
