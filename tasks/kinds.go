package tasks

import (
	"sort"
	"time"
)

// Queue names. Invalidation and revocation go to critical, warming and
// notifications to default, housekeeping to low.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// Kind names. They are part of the wire format: never rename one.
const (
	KindWarm              = "cache:warm"
	KindWarmAll           = "cache:warm_all"
	KindInvalidate        = "cache:invalidate"
	KindInvalidatePattern = "cache:invalidate_pattern"
	KindInvalidateTag     = "cache:invalidate_tag"
	KindSessionCleanup    = "session:cleanup"
	KindSessionRevoke     = "session:revoke"
	KindRateLimitPrune    = "ratelimit:prune"
	KindNotifyPublish     = "notify:publish"
)

// KindInfo describes one kind: its defaults and how to make an empty payload.
type KindInfo struct {
	Kind     string
	Queue    string
	MaxRetry int
	Timeout  time.Duration
	// New returns a pointer to a zero payload of this kind, ready to decode into.
	New func() Payload
}

var kinds = map[string]KindInfo{
	KindWarm:              {KindWarm, QueueDefault, 5, 2 * time.Minute, func() Payload { return &WarmArgs{} }},
	KindWarmAll:           {KindWarmAll, QueueLow, 3, 6 * time.Hour, func() Payload { return &WarmAllArgs{} }},
	KindInvalidate:        {KindInvalidate, QueueCritical, 10, 30 * time.Second, func() Payload { return &InvalidateArgs{} }},
	KindInvalidatePattern: {KindInvalidatePattern, QueueCritical, 5, time.Hour, func() Payload { return &InvalidatePatternArgs{} }},
	KindInvalidateTag:     {KindInvalidateTag, QueueCritical, 10, 5 * time.Minute, func() Payload { return &InvalidateTagArgs{} }},
	KindSessionCleanup:    {KindSessionCleanup, QueueLow, 3, 30 * time.Minute, func() Payload { return &SessionCleanupArgs{} }},
	KindSessionRevoke:     {KindSessionRevoke, QueueCritical, 10, time.Minute, func() Payload { return &SessionRevokeArgs{} }},
	KindRateLimitPrune:    {KindRateLimitPrune, QueueLow, 3, 30 * time.Minute, func() Payload { return &RateLimitPruneArgs{} }},
	KindNotifyPublish:     {KindNotifyPublish, QueueDefault, 5, 30 * time.Second, func() Payload { return &NotifyArgs{} }},
}

// Lookup returns the description of kind, and false for an unknown kind.
func Lookup(kind string) (KindInfo, bool) {
	k, ok := kinds[kind]
	return k, ok
}

// Kinds returns every kind, sorted by name.
func Kinds() []KindInfo {
	out := make([]KindInfo, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// Queues returns the three queue names from most to least urgent.
func Queues() []string { return []string{QueueCritical, QueueDefault, QueueLow} }
