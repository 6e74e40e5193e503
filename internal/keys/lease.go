package keys

// The read protocol's keys (docs/read-protocol.md). A lease and its wake list
// are in the cache key's cluster slot, like its fence, so that one function
// call reads and writes them together.

// Lease is the lease of a cache key: the hash (token, stamp, waiters) of the
// one reader allowed to fill it.
func (k Keys) Lease(key string) string { return k.prefix + "lease:" + SameSlot(key) }

// LeaseWake is the list a fill or a release pushes one element to per waiter
// of the key's lease.
func (k Keys) LeaseWake(key string) string { return k.Lease(key) + ":wake" }

// Hot is the sorted set of a cache's recently read ids (sampled), scored by
// the server time in milliseconds of the read: refresh-ahead rewarms those
// whose keys are near expiry.
func (k Keys) Hot(cache string) string { return k.prefix + "hot:" + cache }

// RefreshAheadMarker is set (with a TTL of the cache's refresh_ahead
// interval) by the worker that runs a refresh-ahead pass of cache, so that
// one worker of a fleet does it per interval.
func (k Keys) RefreshAheadMarker(cache string) string { return k.prefix + "refresh_ahead:" + cache }
