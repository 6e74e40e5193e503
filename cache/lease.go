package cache

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Replies of ck1_get (docs/read-protocol.md).
const (
	replyHit   = 1
	replyLease = 2
	replyWait  = 3
)

// Replies of ck1_fill.
const (
	fillWritten = 1
	fillFenced  = 0
	fillTooOld  = -1
)

// maxBlock bounds one BLPOP on a wake list: a waiter asks again at least
// this often (a lease whose holder died expires; a value may have been
// written without waking).
const maxBlock = time.Second

// loaded is what a load returned: the hash (fields alternate name, value)
// and the tags it joins (spec loads only).
type loaded struct {
	fields []string
	tags   map[string][]string
}

// read runs the protocol for one key: hit, or lease and load and fill, or
// wait for another reader's fill.
func (r *Reader) read(ctx context.Context, c *cacheState, id, key string, load loadFunc) (map[string]string, error) {
	lease, wake := r.keys.Lease(key), r.keys.LeaseWake(key)
	tok := token()
	deadline := time.Now().Add(r.opts.MaxWait)
	for {
		v, err := r.caller.Call(ctx, redisx.FuncGet, []string{key, lease, wake}, tok, r.opts.LeaseTTL.Milliseconds()).Slice()
		if err != nil {
			return nil, fmt.Errorf("cache %q: read %s: %w", c.spec.Name(), key, err)
		}
		code, _ := v[0].(int64)
		switch code {
		case replyHit:
			pttl, _ := v[1].(int64)
			fields, _ := v[2].([]any)
			r.count.hits.Add(1)
			r.afterHit(ctx, c, id, time.Duration(pttl)*time.Millisecond)
			return hashOf(fields), nil
		case replyLease:
			stamp, _ := v[1].(string)
			return r.loadAndFill(ctx, c, id, key, tok, stamp, load)
		case replyWait:
			waitMS, _ := v[1].(int64)
			left := time.Until(deadline)
			if left <= 0 {
				// The holder is slow or gone: read the row ourselves, without
				// caching it (we hold no lease).
				r.count.unfilled.Add(1)
				l, err := r.loadOnly(ctx, c, id, load)
				if err != nil {
					return nil, err
				}
				return mapOf(l.fields), nil
			}
			r.count.waits.Add(1)
			block := min(time.Duration(waitMS)*time.Millisecond, left, maxBlock)
			if err := r.wait(ctx, wake, block); err != nil {
				return nil, fmt.Errorf("cache %q: wait for the fill of %s: %w", c.spec.Name(), key, err)
			}
		default:
			return nil, fmt.Errorf("cache %q: unexpected reply of %s: %v", c.spec.Name(), redisx.FuncGet.Name, v)
		}
	}
}

// wait blocks on the wake list for at most d (BLPOP takes seconds with a
// fraction since Redis 6).
func (r *Reader) wait(ctx context.Context, wake string, d time.Duration) error {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	err := r.opts.Redis.Do(ctx, "BLPOP", wake, strconv.FormatFloat(d.Seconds(), 'f', 3, 64)).Err()
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// loadFunc is a load as read runs it: the hash, ErrNotFound when there is
// no row.
type loadFunc func(ctx context.Context, id string) (loaded, error)

// loaderFunc adapts a caller's Loader: fields in name order.
func loaderFunc(load Loader) loadFunc {
	return func(ctx context.Context, id string) (loaded, error) {
		h, err := load(ctx, id)
		if err != nil {
			return loaded{}, err
		}
		if h == nil {
			return loaded{}, ErrNotFound
		}
		names := make([]string, 0, len(h))
		for f := range h {
			names = append(names, f)
		}
		sort.Strings(names)
		fields := make([]string, 0, 2*len(h))
		for _, f := range names {
			fields = append(fields, f, h[f])
		}
		return loaded{fields: fields}, nil
	}
}

// loadOnly runs the load, naming the cache and id in its errors.
func (r *Reader) loadOnly(ctx context.Context, c *cacheState, id string, load loadFunc) (loaded, error) {
	l, err := load(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return loaded{}, fmt.Errorf("cache %q: load id %s: %w", c.spec.Name(), id, err)
	}
	return l, err
}

// loadAndFill loads the row under the lease and fills the key, fenced by the
// lease's stamp. The row is returned whatever the fill answered: it is what
// the database said after the lease was granted.
func (r *Reader) loadAndFill(ctx context.Context, c *cacheState, id, key, tok, stamp string, load loadFunc) (map[string]string, error) {
	lease, wake := r.keys.Lease(key), r.keys.LeaseWake(key)
	release := func() {
		// A failed release leaves the lease to expire: waiters wait longer.
		if err := r.caller.Call(context.WithoutCancel(ctx), redisx.FuncRelease, []string{lease, wake}, tok).Err(); err != nil {
			r.logger.Warn("cache: release a lease", "key", key, "error", err)
		}
	}
	// A cache with tags on a cluster compares tag fences (on other masters)
	// with stamps of their own masters, as the worker's warm does.
	var st fence.Stamp
	if c.spec.HasTags() {
		var err error
		if st, err = r.fencer.Begin(ctx); err != nil {
			release()
			return nil, fmt.Errorf("cache %q: %w", c.spec.Name(), err)
		}
	}
	r.count.loads.Add(1)
	l, err := r.loadOnly(ctx, c, id, load)
	if err != nil {
		release()
		return nil, err
	}
	if len(l.tags) > 0 {
		if err := r.addTags(ctx, c, l.tags); err != nil {
			release()
			return nil, err
		}
	}
	args := make([]any, 0, 4+len(l.fields))
	args = append(args, tok, stamp, r.maxAge.Milliseconds(), c.spec.TTL().Milliseconds())
	for _, f := range l.fields {
		args = append(args, f)
	}
	ks := []string{key, lease, wake, r.keys.Fence(key), r.cacheFence(c.spec.Name(), key)}
	status, err := r.caller.Call(ctx, redisx.FuncFill, ks, args...).Int64()
	if err != nil {
		return nil, fmt.Errorf("cache %q: fill %s: %w", c.spec.Name(), key, err)
	}
	if status == fillWritten {
		r.count.filled.Add(1)
	} else {
		r.count.refused.Add(1)
	}
	if status == fillWritten && len(l.tags) > 0 {
		if err := r.unwriteFencedTags(ctx, st, key, l.tags); err != nil {
			return nil, fmt.Errorf("cache %q: %w", c.spec.Name(), err)
		}
	}
	return mapOf(l.fields), nil
}

// cacheFence is the cache's fence in key's slot (keys.CacheFence).
func (r *Reader) cacheFence(cache, key string) string {
	if _, ok := r.opts.Redis.(*redis.ClusterClient); ok {
		return r.keys.CacheFence(cache, keysSlotTag(key))
	}
	return r.keys.CacheFence(cache, "")
}

// tagTTLMargin is how much longer than its keys a tag set lives (as the
// worker's warm).
const tagTTLMargin = time.Minute

// addTags adds the key to its tag sets before the fill, so that it is never
// cached outside a tag set it carries.
func (r *Reader) addTags(ctx context.Context, c *cacheState, tags map[string][]string) error {
	ttl := (c.spec.MaxTTL() + tagTTLMargin).Milliseconds()
	calls := make([]redisx.Call, 0, len(tags))
	for tag, members := range tags {
		args := []any{ttl}
		for _, m := range members {
			args = append(args, m)
		}
		calls = append(calls, redisx.Call{Script: redisx.TagAdd, Keys: []string{r.keys.Tag(tag)}, Args: args})
	}
	cmds, err := redisx.EvalAll(ctx, r.opts.Redis, calls)
	if err == nil {
		for _, cmd := range cmds {
			if err = cmd.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cache %q: add to tag sets: %w", c.spec.Name(), err)
	}
	return nil
}

// unwriteFencedTags invalidates key when one of its tags was invalidated
// after st (the tag's capture may have missed the key, added just after).
func (r *Reader) unwriteFencedTags(ctx context.Context, st fence.Stamp, key string, tags map[string][]string) error {
	fenceKeys := make([]string, 0, len(tags))
	for tag := range tags {
		fenceKeys = append(fenceKeys, r.keys.TagFence(tag))
	}
	fenced, err := r.fencer.FencedTags(ctx, st, fenceKeys)
	if err != nil || len(fenced) == 0 {
		return err
	}
	_, err = r.fencer.Invalidate(ctx, []string{key})
	return err
}

// hashOf turns HGETALL's flat reply into a map.
func hashOf(flat []any) map[string]string {
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		f, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[f] = v
	}
	return m
}

// mapOf turns alternating names and values into a map.
func mapOf(fields []string) map[string]string {
	m := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	return m
}
