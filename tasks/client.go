package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// NewTask validates p and builds the asynq task for it, with the kind's
// default queue, retry budget and timeout; opts override those defaults.
func NewTask(p Payload, opts ...Option) (*asynq.Task, error) {
	opts, _ = splitTraceOption(opts)
	if p == nil {
		return nil, fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	info, err := kindInfo(p) // appkind.go: a built-in or a declared kind
	if err != nil {
		return nil, err
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
	headers := map[string]string{HeaderEnqueuedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	return asynq.NewTaskWithHeaders(info.Kind, data, headers, all...), nil
}

// HeaderEnqueuedAt is the task header NewTask sets to the time the task was
// built (RFC 3339, UTC): asynq records no enqueue time of its own, and
// `cachekeeper task show` prints it.
const HeaderEnqueuedAt = "enqueued_at"

// Client enqueues cachekeeper jobs. It is safe for concurrent use.
type Client struct {
	c *asynq.Client
	// rdb runs the commands that are not asynq's (WarmCache).
	rdb    redis.UniversalClient
	keys   keys.Keys
	keyErr error // a bad WithKeyPrefix, returned by WarmCache
	shared bool  // built on the caller's Redis client, which Close leaves open
	// registered holds, per cache name, when WarmCache last added it to the
	// registry.
	registered sync.Map
	// guard refuses jobs naming internal keys under keys' prefix and owned.
	guard *Guard
	owned []string
	// queues and caches, when not nil, are the only names jobs may use
	// (WithQueues, WithCaches).
	queues, caches []string
	offline        bool // NewOfflineClient: no Redis
	// tracer records producer spans (WithTracerProvider); tracing says one
	// was given, so that a job without a parent span gets a root span.
	tracer  trace.Tracer
	tracing bool
}

// ErrOffline is returned by the methods of a client made by
// NewOfflineClient that would reach Redis.
var ErrOffline = errors.New("tasks: offline client (NewOfflineClient) cannot reach Redis")

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithKeyPrefix sets the prefix of cachekeeper's own Redis keys, which must
// match the workers' key_prefix (default "cachekeeper:"). WarmCache writes
// under it, and every job naming a key under it is refused (see Guard); a
// prefix with braces, glob characters or spaces makes NewClient and
// WarmCache return an error.
func WithKeyPrefix(prefix string) ClientOption {
	return func(c *Client) { c.keys, c.keyErr = keys.New(prefix) }
}

// NewClient connects to Redis with opt (for example asynq.RedisClientOpt,
// asynq.RedisClusterClientOpt or asynq.RedisFailoverClientOpt).
func NewClient(opt asynq.RedisConnOpt, opts ...ClientOption) (*Client, error) {
	if opt == nil {
		return nil, errors.New("tasks: NewClient needs a Redis connection option")
	}
	made := opt.MakeRedisClient()
	rc, ok := made.(redis.UniversalClient)
	if !ok || rc == nil {
		if c, ok := made.(io.Closer); ok {
			_ = c.Close()
		}
		return nil, fmt.Errorf("tasks: unsupported Redis connection option %T", opt)
	}
	c := &Client{c: asynq.NewClientFromRedisClient(rc), rdb: rc, keys: keys.Default()}
	for _, o := range opts {
		o(c)
	}
	c.guard = &Guard{rule: c.keys.Rule(c.owned...)}
	if c.keyErr != nil {
		_ = rc.Close()
		return nil, fmt.Errorf("tasks: %w", c.keyErr)
	}
	return c, nil
}

// NewClientFromRedis uses an existing go-redis client. Close does not close it.
func NewClientFromRedis(rdb redis.UniversalClient, opts ...ClientOption) *Client {
	c := &Client{c: asynq.NewClientFromRedisClient(rdb), rdb: rdb, keys: keys.Default(), shared: true}
	for _, o := range opts {
		o(c)
	}
	c.guard = &Guard{rule: c.keys.Rule(c.owned...)}
	return c
}

// Close releases the client's Redis connections (none when the client was
// built with NewClientFromRedis).
func (c *Client) Close() error {
	if c.shared || c.offline {
		return nil
	}
	return c.rdb.Close()
}

// Enqueue validates p and enqueues it. A payload that does not validate,
// names an internal key (Guard) or, with WithQueues or WithCaches, a queue
// or cache the workers do not serve, is returned as an error wrapping
// ErrInvalidPayload and nothing is sent.
func (c *Client) Enqueue(ctx context.Context, p Payload, opts ...Option) (*asynq.TaskInfo, error) {
	opts, parent := splitTraceOption(opts)
	t, err := NewTask(p, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.guard.checkKeys(p); err != nil {
		return nil, err
	}
	if err := c.checkNames(p, opts); err != nil {
		return nil, err
	}
	if c.offline {
		return nil, ErrOffline
	}
	ctx, end := c.startProducer(ctx, t, parent) // trace.go
	info, err := c.c.EnqueueContext(ctx, t)
	end(info, err)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", p.Kind(), err)
	}
	return info, nil
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
