package fence

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Fencer performs fenced writes and fence-advancing invalidations.
type Fencer struct {
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient
	keys    keys.Keys
	ttl     time.Duration
	// restore says whether writes send DUMP payloads (see dump.go).
	restore atomic.Int32
	probeMu sync.Mutex
}

// New returns a Fencer. ttl is how long a fence outlives its invalidation;
// it must exceed the longest database read of a warm.
func New(rdb redis.UniversalClient, k keys.Keys, ttl time.Duration) (*Fencer, error) {
	if rdb == nil {
		return nil, errors.New("fence: nil Redis client")
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("fence: ttl %s is too short (at least 1s)", ttl)
	}
	f := &Fencer{rdb: rdb, keys: k, ttl: ttl}
	f.cluster, _ = rdb.(*redis.ClusterClient)
	return f, nil
}

// Stamp is the Redis server clock (microseconds) taken before a database
// read; on a cluster, one per master address.
type Stamp struct {
	single int64
	byAddr map[string]int64
}

// Begin takes a stamp. Call it before reading the rows you will write.
func (f *Fencer) Begin(ctx context.Context) (Stamp, error) {
	if f.cluster == nil {
		us, err := serverMicros(ctx, f.rdb)
		if err != nil {
			return Stamp{}, err
		}
		return Stamp{single: us}, nil
	}
	var mu sync.Mutex
	st := Stamp{byAddr: map[string]int64{}}
	err := f.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		us, err := serverMicros(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		st.byAddr[c.Options().Addr] = us
		mu.Unlock()
		return nil
	})
	return st, err
}

func serverMicros(ctx context.Context, c redis.Cmdable) (int64, error) {
	t, err := c.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("fence: read Redis clock: %w", err)
	}
	return t.UnixMicro(), nil
}

// Entry is one key to write: the whole hash (Fields alternate name, value)
// and its TTL. An Entry with no Fields deletes the key (the row is gone).
type Entry struct {
	Key    string
	Fields []string
	TTL    time.Duration
}

// Result counts what a Write did.
type Result struct {
	Written int
	// Deleted counts delete entries applied (rows gone), whether or not the
	// key was cached.
	Deleted int
	// Skipped lists keys whose fence refused the write.
	Skipped []string
	// TooOld is set when the stamp was older than the fence TTL: every write
	// was refused; take a new stamp and read again.
	TooOld bool
}

// MaxScriptKeys is the most keys one write script call carries. A larger
// batch is split into several calls sent in the same pipeline (one round
// trip), so that no single script blocks Redis for long.
const MaxScriptKeys = 1000

// Write applies entries of cache whose fences are older than st, each key
// replaced whole with its TTL in one atomic step. A key's fence is its own
// (Invalidate) and, when cache is not empty, the cache's (InvalidateCaches,
// which pattern invalidation advances): either one at or after st refuses
// the write. On a single server the batch is one script call per
// MaxScriptKeys keys; on a cluster one call per hash slot (and per
// MaxScriptKeys keys); all calls go in one pipeline.
func (f *Fencer) Write(ctx context.Context, st Stamp, cache string, entries []Entry) (Result, error) {
	return f.WriteWith(ctx, st, cache, entries, nil)
}

// WriteWith is Write with extra commands queued in the same pipeline before
// the write scripts (for example adding the keys to tag sets), so that they
// cost no extra round trip. They are sent again if the scripts had to be
// loaded, so they must be idempotent; their errors are returned.
func (f *Fencer) WriteWith(ctx context.Context, st Stamp, cache string, entries []Entry, before func(redis.Pipeliner)) (Result, error) {
	if len(entries) == 0 {
		return Result{}, nil
	}
	groups := splitGroups([][]Entry{entries})
	sinces := make([]int64, len(groups))
	for i := range sinces {
		sinces[i] = st.single
	}
	if f.cluster != nil {
		groups = splitGroups(redisx.GroupBySlot(entries, entryKey))
		sinces = make([]int64, len(groups))
		for gi, g := range groups {
			c, err := f.cluster.MasterForKey(ctx, g[0].Key)
			if err != nil {
				return Result{}, fmt.Errorf("fence: find master: %w", err)
			}
			us, ok := st.byAddr[c.Options().Addr]
			if !ok {
				// The slot moved to a master that was not stamped: refuse safely.
				us = math.MaxInt64 / 2
			}
			sinces[gi] = us
		}
	}
	useRestore := f.restoreSupported(ctx)
	script := redisx.FenceWrite
	if useRestore {
		script = redisx.FenceRestore
	}
	cmds, err := redisx.Pipelined(ctx, f.rdb, script, len(groups), before, func(pipe redis.Pipeliner, gi int) *redis.Cmd {
		keyList, args := writeArgs(f.keys, sinces[gi], f.ttl, groups[gi], useRestore)
		if cache != "" {
			keyList = append(keyList, f.cacheFence(cache, groups[gi][0].Key))
		}
		return script.EvalSha(ctx, pipe, keyList, args...)
	})
	if err != nil {
		return Result{}, fmt.Errorf("fence: write: %w", err)
	}
	if useRestore && refused(cmds) {
		// A server that would not load the payload: write with HSET from now on.
		f.restore.Store(restoreNo)
		return f.WriteWith(ctx, st, cache, entries, before)
	}
	for _, cmd := range cmds {
		if vals, err := cmd.Slice(); err == nil && len(vals) == 2 {
			if n, ok := vals[0].(int64); ok && n == -1 {
				return Result{}, fmt.Errorf("fence: write: %v", vals[1])
			}
		}
	}
	var res Result
	for gi, cmd := range cmds {
		vals, err := cmd.Int64Slice()
		if err != nil {
			return res, fmt.Errorf("fence: write result: %w", err)
		}
		res.Written += int(vals[0])
		res.Deleted += int(vals[1])
		if vals[3] == 1 {
			res.TooOld = true
		}
		for _, idx := range vals[4:] {
			res.Skipped = append(res.Skipped, groups[gi][idx-1].Key)
		}
	}
	return res, nil
}

// writeArgs builds the keys and arguments of redisx.FenceWrite, or with dump of
// redisx.FenceRestore (one DUMP payload per key instead of its fields).
func writeArgs(k keys.Keys, since int64, fenceTTL time.Duration, g []Entry, dump bool) ([]string, []any) {
	keyList := make([]string, 2*len(g))
	n := 2
	for i, e := range g {
		keyList[i] = e.Key
		keyList[len(g)+i] = k.Fence(e.Key)
		if dump {
			n += 2
		} else {
			n += 2 + len(e.Fields)
		}
	}
	args := make([]any, 0, n)
	args = append(args, since, fenceTTL.Microseconds())
	for _, e := range g {
		ttl := e.TTL.Milliseconds()
		if ttl < 1 {
			ttl = 1
		}
		if dump {
			var payload []byte
			if len(e.Fields) > 0 {
				payload = hashDump(e.Fields)
			}
			args = append(args, ttl, payload)
			continue
		}
		args = append(args, ttl, len(e.Fields)/2)
		for _, v := range e.Fields {
			args = append(args, v)
		}
	}
	return keyList, args
}

var errNoRestore = errors.New("fence: RESTORE does not yield the hash")

// refused reports whether a redisx.FenceRestore call met a server that would not
// load the payload ("DUMP payload version or checksum are wrong", "Bad data
// format"). Other errors (out of memory...) are not a reason to switch.
func refused(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 2 {
			continue
		}
		if n, ok := vals[0].(int64); ok && n == -1 {
			msg, _ := vals[1].(string)
			if strings.Contains(msg, "payload") || strings.Contains(msg, "Bad data format") {
				return true
			}
		}
	}
	return false
}

// Whether the server loads DUMP payloads (redisx.FenceRestore) or not (redisx.FenceWrite).
const (
	restoreUnknown int32 = iota
	restoreYes
	restoreNo
)

// restoreSupported checks once, on every master, that RESTORE of a hash
// payload yields that hash (an in-memory stand-in such as miniredis may store
// it as a string instead); if not, writes use HSET.
func (f *Fencer) restoreSupported(ctx context.Context) bool {
	switch f.restore.Load() {
	case restoreYes:
		return true
	case restoreNo:
		return false
	}
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	if v := f.restore.Load(); v != restoreUnknown {
		return v == restoreYes
	}
	probe := func(ctx context.Context, c redis.Cmdable) error {
		key := f.keys.Probe("fence-restore")
		if err := c.RestoreReplace(ctx, key, 10*time.Second, string(hashDump([]string{"f", "v"}))).Err(); err != nil {
			return err
		}
		v, err := c.HGet(ctx, key, "f").Result()
		c.Del(ctx, key)
		if err != nil || v != "v" {
			return errNoRestore
		}
		return nil
	}
	var err error
	if f.cluster != nil {
		err = f.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return probe(ctx, c) })
	} else {
		err = probe(ctx, f.rdb)
	}
	var rerr redis.Error
	if err != nil && !errors.Is(err, errNoRestore) && !errors.As(err, &rerr) {
		return false // no answer (network, deadline): decide next time
	}
	if err != nil {
		f.restore.Store(restoreNo)
		return false
	}
	f.restore.Store(restoreYes)
	return true
}

// Invalidate advances the fence of each key and deletes it, atomically per
// key (and per batch on a single server). It returns how many keys existed.
func (f *Fencer) Invalidate(ctx context.Context, keyList []string) (int, error) {
	if len(keyList) == 0 {
		return 0, nil
	}
	entries := make([]Entry, len(keyList))
	for i, k := range keyList {
		entries[i].Key = k
	}
	groups := [][]Entry{entries}
	if f.cluster != nil {
		groups = redisx.GroupBySlot(entries, entryKey)
	}
	ttl := strconv.FormatInt(f.ttl.Milliseconds(), 10)
	cmds, err := redisx.Pipelined(ctx, f.rdb, redisx.FenceInvalidate, len(groups), nil, func(pipe redis.Pipeliner, gi int) *redis.Cmd {
		kl := make([]string, 0, 2*len(groups[gi]))
		for _, e := range groups[gi] {
			kl = append(kl, e.Key, f.keys.Fence(e.Key))
		}
		return redisx.FenceInvalidate.EvalSha(ctx, pipe, kl, ttl)
	})
	if err != nil {
		return 0, fmt.Errorf("fence: invalidate: %w", err)
	}
	total := 0
	for _, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// FenceCaches advances the fences of the named caches (keys.CacheFence):
// afterwards every fenced Write of those caches whose stamp was taken before
// is refused, whichever keys it carries. Pattern invalidation calls it once
// before its walk and then deletes with plain UNLINK, instead of writing one
// fence per key. On a single server it is one script call; on a cluster the
// fence has a copy in every hash slot (each write reads the copy in its own
// slot), so it is one call per slot, pipelined per master (16,384 short
// calls in all per cache).
func (f *Fencer) FenceCaches(ctx context.Context, caches []string) error {
	if len(caches) == 0 {
		return nil
	}
	ttl := strconv.FormatInt(f.ttl.Milliseconds(), 10)
	if f.cluster == nil {
		kl := make([]string, len(caches))
		for i, c := range caches {
			kl[i] = f.keys.CacheFence(c, "")
		}
		if err := redisx.FenceCacheAdvance.Run(ctx, f.rdb, kl, ttl).Err(); err != nil {
			return fmt.Errorf("fence: advance cache fences: %w", err)
		}
		return nil
	}
	const slots = 16384
	_, err := redisx.Pipelined(ctx, f.rdb, redisx.FenceCacheAdvance, slots, nil, func(pipe redis.Pipeliner, slot int) *redis.Cmd {
		kl := make([]string, len(caches))
		for i, c := range caches {
			kl[i] = f.keys.CacheFence(c, keys.SlotTag(slot))
		}
		return redisx.FenceCacheAdvance.EvalSha(ctx, pipe, kl, ttl)
	})
	if err != nil {
		return fmt.Errorf("fence: advance cache fences: %w", err)
	}
	return nil
}

// cacheFence is the fence of cache that a script touching key reads: the
// one key on a single server, the copy in key's slot on a cluster.
func (f *Fencer) cacheFence(cache, key string) string {
	if f.cluster == nil {
		return f.keys.CacheFence(cache, "")
	}
	return f.keys.CacheFence(cache, keys.SlotTag(keys.Slot(key)))
}

// splitGroups cuts every group into pieces of at most MaxScriptKeys entries.
func splitGroups(groups [][]Entry) [][]Entry {
	out := groups[:0:0]
	for _, g := range groups {
		for len(g) > MaxScriptKeys {
			out = append(out, g[:MaxScriptKeys])
			g = g[MaxScriptKeys:]
		}
		out = append(out, g)
	}
	return out
}

// entryKey is what entries are grouped by hash slot on.
func entryKey(e Entry) string { return e.Key }
