// Package asynqx holds what cachekeeper does to asynq's data directly,
// beside asynq's own API, so that an asynq upgrade has one place to check
// (the key names themselves are in internal/keys/asynq.go). Its tests fail
// when asynq's layout changes under it.
package asynqx

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// RegisterQueues adds queues to asynq's set of queues, as asynq's own
// enqueue does on a queue's first job, so that the Inspector (`cachekeeper
// queues`, the UI) lists them with zero counts and they can be paused
// before any job used them. Adding a queue that is already there changes
// nothing.
func RegisterQueues(ctx context.Context, rdb redis.UniversalClient, queues ...string) error {
	if len(queues) == 0 {
		return nil
	}
	members := make([]any, len(queues))
	for i, q := range queues {
		members[i] = q
	}
	if err := rdb.SAdd(ctx, keys.AsynqQueues, members...).Err(); err != nil {
		return fmt.Errorf("register queues %v: %w", queues, err)
	}
	return nil
}

// Registered returns the queues asynq knows (its set of queues).
func Registered(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	names, err := rdb.SMembers(ctx, keys.AsynqQueues).Result()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return names, nil
}

// Paused reports whether queue is paused.
func Paused(ctx context.Context, rdb redis.UniversalClient, queue string) (bool, error) {
	n, err := rdb.Exists(ctx, keys.AsynqPaused(queue)).Result()
	if err != nil {
		return false, fmt.Errorf("queue %s: read its pause flag: %w", queue, err)
	}
	return n == 1, nil
}
