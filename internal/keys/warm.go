package keys

import (
	"errors"
	"fmt"
	"strings"
)

// The coalesced warms of one cache live in three keys that share a cluster
// slot (the cache name is their hash tag), so that one Lua script can touch
// them together:
//
//   - WarmPending, a sorted set of the ids waiting to be warmed, each scored
//     by the request's sequence number (a re-request moves an id up);
//   - WarmSeq, the counter those sequence numbers come from;
//   - WarmDrain, the lease of the worker that is turning the pending ids into
//     cache:warm tasks, so that a fleet enqueues each id once;
//   - WarmServed, a marker every worker that configures the cache renews.

// WarmPending is the sorted set of ids of cache waiting to be warmed.
func (k Keys) WarmPending(cache string) string { return k.warm(cache) + ":pending" }

// WarmSeq is the request counter of cache's pending warms.
func (k Keys) WarmSeq(cache string) string { return k.warm(cache) + ":seq" }

// WarmDrain is the lease of the worker draining cache's pending warms.
func (k Keys) WarmDrain(cache string) string { return k.warm(cache) + ":drain" }

func (k Keys) warm(cache string) string { return k.prefix + "warm:{" + cache + "}" }

// WarmServed exists (with a TTL) while a running worker takes cache's
// pending ids; every such worker renews it.
func (k Keys) WarmServed(cache string) string { return k.warm(cache) + ":served" }

// WarmCaches is the set of cache names WarmCache has been called with, so
// that ids pending for a cache no worker configures can be found and reported.
func (k Keys) WarmCaches() string { return k.prefix + "warm:caches" }

// CheckCacheName reports whether name can name a cache: a plain word, since
// it becomes part of key names and the hash tag of the coalescing keys.
func CheckCacheName(name string) error {
	if strings.TrimSpace(name) == "" {
		return errors.New("must name a cache (for example \"user\")")
	}
	if strings.ContainsAny(name, " {}*?[]\t\n") {
		return fmt.Errorf("%q is not a cache name: names are plain words such as \"user\" (no spaces, braces or glob characters)", name)
	}
	return nil
}
