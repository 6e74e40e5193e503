package tasks

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// MaxWarmCacheIDs is the most ids one WarmCache call takes.
const MaxWarmCacheIDs = 1000

// pendingAddScript adds ids to a cache's pending set, each scored by a
// sequence number of its own from the cache's counter, so that an id asked
// for again after a worker read the set scores higher than anything that
// worker read and is not removed when the worker acknowledges its batch.
//
// KEYS: pending set, counter. ARGV: ids.
var pendingAddScript = redis.NewScript(`
local last = redis.call('INCRBY', KEYS[2], #ARGV)
local args = {}
for i = 1, #ARGV do
  args[2*i-1] = last - #ARGV + i
  args[2*i] = ARGV[i]
end
return redis.call('ZADD', KEYS[1], unpack(args))
`)

// WarmCache asks for the cached rows of ids to be refreshed soon, for
// example WarmCache(ctx, "user", 42), and is cheap enough to call on every
// request: it adds the ids to the cache's pending set in Redis (one command,
// no job per call), so that asking for the same id many times costs one read.
// The worker takes the pending ids every warm.coalesce_interval and runs them
// as cache:warm jobs of up to warm.coalesce_max_size ids each (one SQL query
// per warm.chunk_size ids), on warm.coalesce_queue. Nothing is lost: an id
// leaves the set only once a job holding it is enqueued, and an id asked for
// again meanwhile stays for the next batch. Use WarmCacheIDs to enqueue a
// job at once instead, with per-job options.
//
// The client's key prefix (WithKeyPrefix) must be the workers' key_prefix;
// only workers whose caches include cache take its ids.
func (c *Client) WarmCache(ctx context.Context, cache string, ids ...any) error {
	if c.keyErr != nil {
		return fmt.Errorf("tasks: %w", c.keyErr)
	}
	if len(ids) > MaxWarmCacheIDs {
		return fieldErr(KindWarm, "ids", "WarmCache takes at most %d ids per call, got %d", MaxWarmCacheIDs, len(ids))
	}
	a := WarmArgs{Cache: cache, IDs: make(IDs, len(ids))}
	for i, id := range ids {
		s, err := ID(id)
		if err != nil {
			return err
		}
		a.IDs[i] = s
	}
	if err := a.Validate(); err != nil {
		return err
	}
	args := make([]any, len(a.IDs))
	for i, id := range a.IDs {
		args[i] = id
	}
	err := pendingAddScript.Run(ctx, c.rdb, []string{c.keys.WarmPending(cache), c.keys.WarmSeq(cache)}, args...).Err()
	if err != nil {
		return fmt.Errorf("warm %s: add to the pending set: %w", cache, err)
	}
	return nil
}
