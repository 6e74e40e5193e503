package redisx

import (
	"embed"
	"path"
	"sort"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// Script is one Lua script of lua/. It embeds *redis.Script, so Run
// (EVALSHA, then EVAL on NOSCRIPT), EvalSha, Eval and Load work as in
// go-redis; pipelines of calls go through EvalAll, RunPerSlot or Pipelined.
type Script struct {
	*redis.Script
	name string
	src  string
}

// Name is the script's file name in lua/, such as "fence_write.lua".
func (s *Script) Name() string { return s.name }

var registry = map[string]*Script{}

func load(name string) *Script {
	src, err := luaFiles.ReadFile(path.Join("lua", name))
	if err != nil {
		panic("redisx: missing embedded script " + name) // a build error in effect: the file list is fixed
	}
	s := &Script{Script: redis.NewScript(string(src)), name: name, src: string(src)}
	registry[name] = s
	return s
}

// All returns every script, sorted by name (for tests and tools).
func All() []*Script {
	out := make([]*Script, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// The scripts, by the room that uses them. Each file's header gives its
// KEYS, ARGV and reply.
var (
	// Fenced cache writes and deletes (internal/fence).
	FenceWrite        = load("fence_write.lua")
	FenceRestore      = load("fence_restore.lua")
	FenceInvalidate   = load("fence_invalidate.lua")
	FenceCacheAdvance = load("fence_cache_advance.lua")
	FenceTagCapture   = load("fence_tag_capture.lua")

	// Cache tags (worker's warm).
	TagAdd = load("tag_add.lua")

	// Coalesced warming (tasks.Client.WarmCache and the worker's drain).
	WarmPendingAdd   = load("warm_pending_add.lua")
	WarmDrainTake    = load("warm_drain_take.lua")
	WarmDrainAck     = load("warm_drain_ack.lua")
	WarmDrainRelease = load("warm_drain_release.lua")

	// The inbox bridge (internal/inbox).
	InboxTake = load("inbox_take.lua")
	InboxAck  = load("inbox_ack.lua")
	// ListMove also serves the inbox's dead-letter list (internal/inbox).
	ListMove = load("list_move.lua")

	// Sessions (session).
	SessionTouch             = load("session_touch.lua")
	SessionDeleteIfOwner     = load("session_delete_if_owner.lua")
	SessionDeleteIfUnchanged = load("session_delete_if_unchanged.lua")
	ExpireIfNone             = load("expire_if_none.lua")
	SRemReport               = load("srem_report.lua")

	// Rate limits (ratelimit).
	RateLimitAllow = load("ratelimit_allow.lua")
	RateLimitPrune = load("ratelimit_prune.lua")

	// The scheduler (scheduler).
	SchedulerRecordTick = load("scheduler_record_tick.lua")

	// Recovery of dead workers' jobs (worker/recover.go).
	RecoverRequeue = load("recover_requeue.lua")
	// Lease extension that keeps only this worker's own leases (worker/leasetap.go).
	LeaseExtendOwned = load("lease_extend_owned.lua")
)
