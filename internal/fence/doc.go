// Package fence keeps warm writes from putting stale data back into the
// cache: the stale-set race of cache-aside ("Scaling Memcache at Facebook",
// NSDI 2013, section 3.2.1) closed with per-key fences.
//
// Every invalidation advances the key's fence to the Redis server's clock (in
// microseconds, strictly increasing per key) and deletes the key, in one Lua
// script. A warm takes a Stamp (the server clock) before it reads the
// database; its write is applied by one Lua script only if the key's fence is
// older than the stamp. So no warm write lands after an invalidation that
// happened after the warm's database read began, and no key list needs to be
// known before the read (whole-table warms read pages of unknown ids).
//
// A write replaces each hash whole, with its TTL, in one step: by RESTORE of
// a DUMP payload built in Go (dump.go; one command per key) on servers that
// load it, by DEL, HSET and PEXPIRE inside the script otherwise (miniredis).
// Either way one script per batch (per hash slot on a cluster) checks every
// fence with one MGET, and the whole batch costs one round trip.
//
// A fence lives for Config.TTL after its invalidation; a write whose stamp is
// older than that is refused too, so an expired fence can never let an old
// read through. On Redis Cluster, stamps are taken on every master and each
// key is compared with the clock of its own master.
package fence
