package keys

// TagHold holds the members of a tag set while an invalidation of the tag
// deletes them (the set itself is emptied at once, so that keys tagged from
// then on go to a fresh set). It is in the tag set's cluster slot and named
// after the invalidating job, so that a retry of the job finds it again.
func (k Keys) TagHold(tag, job string) string { return SameSlot(k.Tag(tag)) + ":invalidating:" + job }

// TagFence is the fence of a tag: the Redis server time (microseconds) of
// the tag's last invalidation, in the tag set's cluster slot.
func (k Keys) TagFence(tag string) string { return k.Fence(k.Tag(tag)) }

// TagPruneMarker is set (with a TTL of the prune interval) by the worker
// that prunes the tag sets, so that one worker of a fleet does it per
// interval.
func (k Keys) TagPruneMarker() string { return k.prefix + "tag_prune" }

// Internal reports whether key belongs to cachekeeper or to the asynq queue
// rather than to the application: its own keys (prefix), keys built with
// SameSlot from them ("{cachekeeper:inbox}:processing") and asynq's keys.
// See Rule: no job deletes, expires or rewrites these.
func (k Keys) Internal(key string) bool { return k.Rule().Internal(key) }

// Rule is the internal-key rule for this prefix.
func (k Keys) Rule(owned ...string) Rule { return NewRule(k.prefix, owned...) }

// AsynqPrefix starts every key of the asynq queue.
const AsynqPrefix = "asynq:"
