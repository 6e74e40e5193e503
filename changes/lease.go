package changes

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// errLeaseLost says another replica holds the stream now.
var errLeaseLost = errors.New("changes: the stream's lease was lost to another replica")

// lease is the Redis key that names the one replica reading the stream. It
// expires ttl after its holder's last renewal, so a killed holder's stream
// is taken over by a waiting replica within ttl plus one poll.
type lease struct {
	rdb    redis.UniversalClient
	key    string
	holder string
	ttl    time.Duration
}

// acquire takes the lease when it is free.
func (l *lease) acquire(ctx context.Context) (bool, error) {
	return l.rdb.SetNX(ctx, l.key, l.holder, l.ttl).Result()
}

// renew extends the lease; errLeaseLost when another replica holds it.
func (l *lease) renew(ctx context.Context) error {
	return l.rdb.Watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, l.key).Result()
		if errors.Is(err, redis.Nil) || (err == nil && v != l.holder) {
			return errLeaseLost
		}
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.PExpire(ctx, l.key, l.ttl)
			return nil
		})
		return err
	}, l.key)
}

// release gives the lease up if this replica still holds it, so that a
// waiting replica takes over at its next poll instead of after ttl.
func (l *lease) release(ctx context.Context) error {
	err := l.rdb.Watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, l.key).Result()
		if err != nil || v != l.holder {
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, l.key)
			return nil
		})
		return err
	}, l.key)
	if errors.Is(err, redis.TxFailedErr) {
		return nil
	}
	return err
}
