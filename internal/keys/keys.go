// Package keys builds every Redis key and channel name cachekeeper uses, and
// renders the key templates of users' data ("user:{id}", "session:{token}").
//
// Keys that must be touched together in one Lua script or one BLMOVE (a cache
// key and its fence, the inbox and its processing list) are built to hash to
// the same Redis Cluster slot.
package keys

import (
	"fmt"
	"strings"
)

// DefaultPrefix starts every key cachekeeper owns.
const DefaultPrefix = "cachekeeper:"

// Keys builds cachekeeper's own key names under one prefix.
type Keys struct {
	prefix string
}

// New returns a key builder; an empty prefix means DefaultPrefix.
func New(prefix string) (Keys, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}*?[] \t\n") {
		return Keys{}, fmt.Errorf("key prefix %q must not contain braces, glob characters or spaces", prefix)
	}
	return Keys{prefix: prefix}, nil
}

// Probe is a short-lived key cachekeeper writes to learn what the server
// supports (for example whether it loads DUMP payloads).
func (k Keys) Probe(name string) string { return k.prefix + "probe:" + name }

// Default is the builder with DefaultPrefix.
func Default() Keys { return Keys{prefix: DefaultPrefix} }

// Prefix returns the prefix.
func (k Keys) Prefix() string { return k.prefix }

// Fence is the fence of a cache key, in the same cluster slot as the key.
func (k Keys) Fence(key string) string { return k.prefix + "fence:" + SameSlot(key) }

// CacheFence is the fence of a whole cache: pattern invalidation advances
// it once per batch instead of one fence per key, and every fenced write of
// the cache checks it beside the keys' own fences. slotTag is empty on a
// single server; on a cluster it is SlotTag of the slot the script runs on
// (one copy of the fence per slot), so the fence is in the slot of the keys.
func (k Keys) CacheFence(cache, slotTag string) string {
	if slotTag == "" {
		return k.prefix + "cachefence:" + cache
	}
	return k.prefix + "cachefence:" + cache + ":{" + slotTag + "}"
}

// FencesOf matches the fences of the keys that start with prefix, a literal
// with no braces or glob characters (such a key's fence wraps it whole in a
// hash tag: see SameSlot). Benchmarks clean up with it.
func (k Keys) FencesOf(prefix string) string { return k.prefix + "fence:{" + prefix + "*" }

// Tag is the set of keys carrying tag.
func (k Keys) Tag(tag string) string { return k.prefix + "tag:" + tag }

// TagPattern matches every tag set.
func (k Keys) TagPattern() string { return k.prefix + "tag:*" }

// WarmAllCheckpoint holds the position of a whole-table warm of cache.
func (k Keys) WarmAllCheckpoint(cache string) string { return k.prefix + "warm_all:" + cache }

// EventsChannel is the default pub/sub channel of cache events.
func (k Keys) EventsChannel() string { return k.prefix + "events" }

// CancelChannel is the pub/sub channel on which `cachekeeper task cancel`
// sends the id of a running job to stop; the worker running it ends the
// job's context and archives the job as cancelled.
func (k Keys) CancelChannel() string { return k.prefix + "cancel" }

// KindsIndex is the set of the names of the kinds of the application's own
// that running workers handle; each has a KindSpec key. Both share the
// hash tag {kinds}, so one MGET reads every spec on a cluster too.
func (k Keys) KindsIndex() string { return k.prefix + "{kinds}" }

// KindSpec holds the JSON description (tasks.KindSpec) of a kind of the
// application's own, written by every worker that handles it with a TTL it
// refreshes: once no running worker handles the kind, the key expires.
func (k Keys) KindSpec(kind string) string { return k.prefix + "{kinds}:" + kind }

// Inbox is the default list that producers in any language LPUSH jobs to.
func (k Keys) Inbox() string { return k.prefix + "inbox" }

// Processing is the inbox's processing list, in the same slot as inbox: the
// bridge moves entries there before it enqueues them and removes them once
// enqueued. Its elements are batch envelopes ({"cachekeeper_inbox_batch":
// id, "moved_at": ..., "entries": [raw entries]}), envelopes of one entry
// ({"cachekeeper_inbox_id": ...}, after a BLMOVE), and raw entries for the
// moment between a BLMOVE and its wrapping (internal/inbox).
func Processing(inbox string) string { return SameSlot(inbox) + ":processing" }

// DeadLetter is where invalid inbox entries go, with the reason attached.
func DeadLetter(inbox string) string { return SameSlot(inbox) + ":dead" }

// SameSlot returns a string that, used as a key or a key prefix, hashes to the
// same Redis Cluster slot as key: key itself when it has a hash tag, else key
// wrapped in braces. Keys that contain braces but no valid tag cannot be
// wrapped safely and are returned as they are.
func SameSlot(key string) string {
	if _, ok := HashTag(key); ok {
		return key
	}
	if strings.ContainsAny(key, "{}") {
		return key
	}
	return "{" + key + "}"
}

// HashTag returns the hash tag of key as Redis Cluster defines it: the text
// between the first '{' and the next '}', when it is not empty.
func HashTag(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return "", false
	}
	return key[open+1 : open+1+end], true
}
