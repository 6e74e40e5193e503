package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// NewTask validates p and builds the asynq task for it, with the kind's
// default queue, retry budget and timeout; opts override those defaults.
func NewTask(p Payload, opts ...Option) (*asynq.Task, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	info, ok := Lookup(p.Kind())
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", ErrInvalidPayload, p.Kind())
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", info.Kind, err)
	}
	all := make([]Option, 0, 3+len(opts))
	all = append(all, asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry), asynq.Timeout(info.Timeout))
	all = append(all, opts...)
	return asynq.NewTask(info.Kind, data, all...), nil
}

// Client enqueues cachekeeper jobs. It is safe for concurrent use.
type Client struct {
	c      *asynq.Client
	shared bool // built on the caller's Redis client, which Close leaves open
}

// NewClient connects to Redis with opt (for example asynq.RedisClientOpt,
// asynq.RedisClusterClientOpt or asynq.RedisFailoverClientOpt).
func NewClient(opt asynq.RedisConnOpt) (*Client, error) {
	if opt == nil {
		return nil, errors.New("tasks: NewClient needs a Redis connection option")
	}
	rc, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok || rc == nil {
		return nil, fmt.Errorf("tasks: unsupported Redis connection option %T", opt)
	}
	_ = rc.Close()
	return &Client{c: asynq.NewClient(opt)}, nil
}

// NewClientFromRedis uses an existing go-redis client. Close does not close it.
func NewClientFromRedis(rdb redis.UniversalClient) *Client {
	return &Client{c: asynq.NewClientFromRedisClient(rdb), shared: true}
}

// Close releases the client's Redis connections (none when the client was
// built with NewClientFromRedis).
func (c *Client) Close() error {
	if c.shared {
		return nil
	}
	return c.c.Close()
}

// Enqueue validates p and enqueues it. A payload that does not validate is
// returned as an error wrapping ErrInvalidPayload and nothing is sent.
func (c *Client) Enqueue(ctx context.Context, p Payload, opts ...Option) (*asynq.TaskInfo, error) {
	t, err := NewTask(p, opts...)
	if err != nil {
		return nil, err
	}
	info, err := c.c.EnqueueContext(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", p.Kind(), err)
	}
	return info, nil
}

// WarmGroupPrefix starts the asynq group name of a cache's coalesced warms.
const WarmGroupPrefix = "cache:"

// WarmGroup is the asynq group that single-id warms of cache wait in until
// the worker merges them into one batched cache:warm task.
func WarmGroup(cache string) string { return WarmGroupPrefix + cache }

// WarmGroupShards is how many groups WarmCache spreads a cache's warms over
// (by a hash of the id, so repeats of an id meet in the same group): the
// worker merges at most one batch per group per check, so shards multiply
// how many ids a burst can coalesce per second.
const WarmGroupShards = 4

// WarmGroupFor is the group WarmCache puts a warm of id in: WarmGroup(cache)
// followed by "#" and the id's shard.
func WarmGroupFor(cache, id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return WarmGroup(cache) + "#" + strconv.Itoa(int(h.Sum32()%WarmGroupShards))
}

// WarmCache refreshes one cached row, for example WarmCache(ctx, "user", 42).
// Calls for the same cache are coalesced: they wait in the cache's groups
// (see WarmGroupFor) and the worker runs them as batches, reading each id
// once per batch, after the configured grace period. Use WarmCacheIDs to skip the wait.
func (c *Client) WarmCache(ctx context.Context, cache string, id any, opts ...Option) (*asynq.TaskInfo, error) {
	s, err := ID(id)
	if err != nil {
		return nil, err
	}
	all := make([]Option, 0, len(opts)+1)
	all = append(all, asynq.Group(WarmGroupFor(cache, s)))
	return c.Enqueue(ctx, &WarmArgs{Cache: cache, IDs: IDs{s}}, append(all, opts...)...)
}

// WarmCacheIDs refreshes the cached rows of ids.
func (c *Client) WarmCacheIDs(ctx context.Context, cache string, ids []string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &WarmArgs{Cache: cache, IDs: ids}, opts...)
}

// WarmAll streams a whole table into a cache.
func (c *Client) WarmAll(ctx context.Context, cache string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &WarmAllArgs{Cache: cache}, opts...)
}

// InvalidateCache deletes the cached row of one id, for example
// InvalidateCache(ctx, "user", 42).
func (c *Client) InvalidateCache(ctx context.Context, cache string, id any, opts ...Option) (*asynq.TaskInfo, error) {
	s, err := ID(id)
	if err != nil {
		return nil, err
	}
	return c.Enqueue(ctx, &InvalidateArgs{Cache: cache, IDs: IDs{s}}, opts...)
}

// InvalidateCacheIDs deletes the cached rows of ids.
func (c *Client) InvalidateCacheIDs(ctx context.Context, cache string, ids []string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &InvalidateArgs{Cache: cache, IDs: ids}, opts...)
}

// InvalidateKeys deletes literal keys.
func (c *Client) InvalidateKeys(ctx context.Context, keys []string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &InvalidateArgs{Keys: keys}, opts...)
}

// InvalidatePattern deletes every key matching pattern.
func (c *Client) InvalidatePattern(ctx context.Context, pattern string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &InvalidatePatternArgs{Pattern: pattern}, opts...)
}

// InvalidateTag deletes every key carrying tag.
func (c *Client) InvalidateTag(ctx context.Context, tag string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &InvalidateTagArgs{Tag: tag}, opts...)
}

// CleanupSessions removes expired, idle and orphaned session data.
func (c *Client) CleanupSessions(ctx context.Context, args SessionCleanupArgs, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &args, opts...)
}

// RevokeSessions deletes every session of a user.
func (c *Client) RevokeSessions(ctx context.Context, userID any, opts ...Option) (*asynq.TaskInfo, error) {
	s, err := ID(userID)
	if err != nil {
		return nil, err
	}
	return c.Enqueue(ctx, &SessionRevokeArgs{UserID: s}, opts...)
}

// PruneRateLimits trims sliding-window rate-limit sets.
func (c *Client) PruneRateLimits(ctx context.Context, args RateLimitPruneArgs, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &args, opts...)
}

// Publish sends message on a pub/sub channel, now or (with ProcessAt or
// ProcessIn) later.
func (c *Client) Publish(ctx context.Context, channel, message string, opts ...Option) (*asynq.TaskInfo, error) {
	return c.Enqueue(ctx, &NotifyArgs{Channel: channel, Message: message}, opts...)
}
