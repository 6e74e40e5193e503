package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/coalesce"
)

// registryRefresh is how often a client adds a cache name it uses to the
// registry again (workers drop names with nothing pending and no worker).
const registryRefresh = time.Minute

// MaxWarmCacheIDs is the most ids one WarmCache call takes. The script
// passes 2 values per id to one ZADD through Lua's unpack, which fails past
// about 8,000 values.
const MaxWarmCacheIDs = coalesce.MaxAddIDs

// WarmCache asks for the cached rows of ids to be refreshed soon, for
// example WarmCache(ctx, "user", 42), and is cheap enough to call on every
// request: it adds the ids to the cache's pending set in Redis (one script
// call, no job), so that asking for the same id many times costs one read.
// The worker takes the pending ids every warm.coalesce_interval and runs them
// as cache:warm jobs of up to warm.coalesce_max_size ids each (one SQL query
// per warm.chunk_size ids), on warm.coalesce_queue. An id leaves the set only
// once a job holding it is enqueued, and an id asked for again meanwhile
// stays for a later job (its score changes, even if the request counter was
// lost). Use WarmCacheIDs to enqueue a job at once instead, with per-job
// options.
//
// The client's key prefix (WithKeyPrefix) must be the workers' key_prefix;
// only workers whose caches include cache take its ids. The client also adds
// the cache name to a registry (keys.WarmCaches; a second command on the
// first call for a cache, then once a minute), so that workers and
// `cachekeeper queues` report ids pending for a cache no running worker
// serves (a misspelt name).
func (c *Client) WarmCache(ctx context.Context, cache string, ids ...any) error {
	a := WarmArgs{Cache: cache}
	if err := c.pendingIDs(KindWarm, "WarmCache", cache, ids, &a.IDs, func() error { return a.Validate() }); err != nil {
		return err
	}
	if last, ok := c.registered.Load(cache); !ok || time.Since(last.(time.Time)) > registryRefresh {
		if err := c.rdb.SAdd(ctx, c.keys.WarmCaches(), cache).Err(); err != nil {
			return fmt.Errorf("warm %s: register the cache name: %w", cache, err)
		}
		c.registered.Store(cache, time.Now())
	}
	if err := coalesce.Add(ctx, c.rdb, coalesce.WarmSet(c.keys, cache), a.IDs); err != nil {
		return fmt.Errorf("warm %s: add to the pending set: %w", cache, err)
	}
	return nil
}

// MaxInvalidateIDs is the most ids one Invalidate call takes.
const MaxInvalidateIDs = coalesce.MaxAddIDs

// Invalidate deletes the cached rows of ids soon, each key's fence advanced
// with it as InvalidateCache does, and is cheap enough to call after every
// write, for example Invalidate(ctx, "user", 42): it adds the ids to the
// cache's pending invalidations in Redis (one script call, no job) and
// returns. A worker blocked on the cache's wake list takes the pending ids
// within invalidate.coalesce_window, and deletes them in fenced batches of up
// to invalidate.coalesce_max_size keys, one script call each, publishing one
// event per batch that names every key; it removes an id from the pending
// set only once its key is deleted, so a worker that dies mid-batch leaves
// the ids for the next one. Ids asked for while a batch runs go in the next.
//
// When Invalidate returns nil the request is in Redis: no worker crash loses
// it. Use InvalidateCache or InvalidateCacheIDs for a job of its own (with a
// task id, rewarm, options, or a result to read back).
//
// The client's key prefix (WithKeyPrefix) must be the workers' key_prefix,
// and cache a cache the workers configure, with a key made of the id alone.
func (c *Client) Invalidate(ctx context.Context, cache string, ids ...any) error {
	if len(ids) == 0 {
		return fieldErr(KindInvalidate, "ids", "give at least one id")
	}
	a := InvalidateArgs{Cache: cache}
	if err := c.pendingIDs(KindInvalidate, "Invalidate", cache, ids, &a.IDs, func() error { return a.Validate() }); err != nil {
		return err
	}
	if err := coalesce.Add(ctx, c.rdb, coalesce.InvalidateSet(c.keys, cache), a.IDs); err != nil {
		return fmt.Errorf("invalidate %s: add to the pending set: %w", cache, err)
	}
	return nil
}

// pendingIDs checks a call that adds ids to a cache's pending set (WarmCache,
// Invalidate): the client's key prefix, at most coalesce.MaxAddIDs ids, each
// id, the payload (validate, once *dst holds the ids) and the cache name; it
// refuses an offline client.
func (c *Client) pendingIDs(kind, call, cache string, ids []any, dst *IDs, validate func() error) error {
	if c.keyErr != nil {
		return fmt.Errorf("tasks: %w", c.keyErr)
	}
	if len(ids) > coalesce.MaxAddIDs {
		return fieldErr(kind, "ids", "%s takes at most %d ids per call, got %d", call, coalesce.MaxAddIDs, len(ids))
	}
	*dst = make(IDs, len(ids))
	for i, id := range ids {
		s, err := ID(id)
		if err != nil {
			return err
		}
		(*dst)[i] = s
	}
	if err := validate(); err != nil {
		return err
	}
	if err := c.checkCache(cache); err != nil {
		return err
	}
	if c.offline {
		return ErrOffline
	}
	return nil
}
