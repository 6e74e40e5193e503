// Package catalog records in Redis the kinds of the application's own that
// running workers handle (tasks.KindSpec), so that producers without the Go
// types, the inbox bridge and `cachekeeper enqueue job`, accept a kind some
// worker handles and refuse one none does.
//
// Each kind's spec is a key (keys.KindSpec) with a TTL that every worker
// handling the kind refreshes (Publish, every TTL/3); its name is also in
// the set keys.KindsIndex. When the last worker handling a kind stops (or
// dies), its key expires within TTL and the kind is unknown again; a
// worker's Publish removes such names from the set.
package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// DefaultTTL is how long a kind stays known after the last refresh by a
// worker that handles it.
const DefaultTTL = time.Minute

// Publish records specs for ttl and drops the names of kinds no worker
// refreshed in time from the index.
func Publish(ctx context.Context, rdb redis.UniversalClient, k keys.Keys, specs []tasks.KindSpec, ttl time.Duration) error {
	if len(specs) == 0 {
		return nil
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range specs {
			data, err := json.Marshal(s)
			if err != nil {
				return err
			}
			p.Set(ctx, k.KindSpec(s.Kind), data, ttl)
			p.SAdd(ctx, k.KindsIndex(), s.Kind)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record the kinds this worker handles: %w", err)
	}
	_, gone, err := read(ctx, rdb, k)
	if err != nil {
		return err
	}
	if len(gone) > 0 {
		members := make([]any, len(gone))
		for i, g := range gone {
			members[i] = g
		}
		if err := rdb.SRem(ctx, k.KindsIndex(), members...).Err(); err != nil {
			return fmt.Errorf("drop expired kinds from %s: %w", k.KindsIndex(), err)
		}
	}
	return nil
}

// Lookup returns the spec of kind, and false when no running worker
// handles it.
func Lookup(ctx context.Context, rdb redis.UniversalClient, k keys.Keys, kind string) (tasks.KindSpec, bool, error) {
	data, err := rdb.Get(ctx, k.KindSpec(kind)).Bytes()
	if err == redis.Nil {
		return tasks.KindSpec{}, false, nil
	}
	if err != nil {
		return tasks.KindSpec{}, false, fmt.Errorf("look up kind %q: %w", kind, err)
	}
	var s tasks.KindSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return tasks.KindSpec{}, false, fmt.Errorf("kind %q: unreadable spec at %s: %w", kind, k.KindSpec(kind), err)
	}
	return s, true, nil
}

// Known returns the specs of every kind of the application's own a running
// worker handles, sorted by name.
func Known(ctx context.Context, rdb redis.UniversalClient, k keys.Keys) ([]tasks.KindSpec, error) {
	live, _, err := read(ctx, rdb, k)
	return live, err
}

func read(ctx context.Context, rdb redis.UniversalClient, k keys.Keys) (live []tasks.KindSpec, gone []string, err error) {
	names, err := rdb.SMembers(ctx, k.KindsIndex()).Result()
	if err != nil || len(names) == 0 {
		return nil, nil, err
	}
	slices.Sort(names)
	ks := make([]string, len(names))
	for i, n := range names {
		ks[i] = k.KindSpec(n)
	}
	vals, err := rdb.MGet(ctx, ks...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read the kinds workers handle: %w", err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			gone = append(gone, names[i])
			continue
		}
		var s tasks.KindSpec
		if json.Unmarshal([]byte(str), &s) == nil {
			live = append(live, s)
		}
	}
	return live, gone, nil
}

// Names returns the kinds a producer may send: the built-in kinds, then
// those of specs.
func Names(specs []tasks.KindSpec) []string {
	var out []string
	for _, k := range tasks.Kinds() {
		out = append(out, k.Kind)
	}
	for _, s := range specs {
		out = append(out, s.Kind)
	}
	return out
}

// Resolver looks kinds up for a caller without a context (the inbox's
// parser), with a short cache: a kind found is trusted for CacheFor, one
// not found is asked again after a second.
type Resolver struct {
	rdb     redis.UniversalClient
	keys    keys.Keys
	timeout time.Duration
	// CacheFor is how long a kind found stays cached (default 5s).
	CacheFor time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	spec  tasks.KindSpec
	found bool
	until time.Time
}

// NewResolver returns a Resolver reading from rdb under k.
func NewResolver(rdb redis.UniversalClient, k keys.Keys) *Resolver {
	return &Resolver{rdb: rdb, keys: k, timeout: 5 * time.Second, CacheFor: 5 * time.Second, cache: map[string]cached{}}
}

// Spec returns the spec of kind, and false when no running worker handles
// it.
func (r *Resolver) Spec(kind string) (tasks.KindSpec, bool, error) {
	now := time.Now()
	r.mu.Lock()
	c, ok := r.cache[kind]
	r.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.spec, c.found, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	spec, found, err := Lookup(ctx, r.rdb, r.keys, kind)
	if err != nil {
		return tasks.KindSpec{}, false, err
	}
	c = cached{spec: spec, found: found, until: now.Add(time.Second)}
	if found {
		c.until = now.Add(r.CacheFor)
	}
	r.mu.Lock()
	if len(r.cache) > 10000 {
		clear(r.cache) // bounded: producers may send any number of bad names
	}
	r.cache[kind] = c
	r.mu.Unlock()
	return spec, found, nil
}

// Known returns every kind a producer may send now, for error messages.
func (r *Resolver) Known() []string {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	specs, _ := Known(ctx, r.rdb, r.keys)
	return Names(specs)
}
