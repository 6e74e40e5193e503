package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/redis/go-redis/v9"
)

// ErrDeadLetterGone is returned when a dead letter to replay or purge is no
// longer in the list (replayed, purged or trimmed meanwhile).
var ErrDeadLetterGone = errors.New("inbox: dead letter no longer in the list")

// DeadRecord is a dead letter as stored (Raw, the list element) and decoded.
type DeadRecord struct {
	// Index is the position in the list, 0 the newest.
	Index int
	Raw   string
	DeadLetter
}

// ListDead returns up to limit dead letters of the inbox at key, newest
// first, starting at offset (limit <= 0: all).
func ListDead(ctx context.Context, rdb redis.UniversalClient, key string, offset, limit int) ([]DeadRecord, error) {
	stop := int64(-1)
	if limit > 0 {
		stop = int64(offset + limit - 1)
	}
	raws, err := rdb.LRange(ctx, keys.DeadLetter(key), int64(offset), stop).Result()
	if err != nil {
		return nil, fmt.Errorf("inbox: read dead letters: %w", err)
	}
	out := make([]DeadRecord, 0, len(raws))
	for i, raw := range raws {
		r := DeadRecord{Index: offset + i, Raw: raw}
		if err := json.Unmarshal([]byte(raw), &r.DeadLetter); err != nil {
			// Not written by the bridge: show it as it is.
			r.Entry, r.Error = raw, "unreadable dead-letter record: "+err.Error()
		}
		out = append(out, r)
	}
	return out, nil
}

// CountDead returns the length of the dead-letter list.
func CountDead(ctx context.Context, rdb redis.UniversalClient, key string) (int64, error) {
	n, err := rdb.LLen(ctx, keys.DeadLetter(key)).Result()
	if err != nil {
		return 0, fmt.Errorf("inbox: count dead letters: %w", err)
	}
	return n, nil
}

// ReplayDead removes the dead letter rec from the list and pushes entry onto
// the inbox at key in one atomic step, so the bridge takes it again (and
// validates it again). entry is rec's own entry for a replay as it is, or a
// fixed version of it.
func ReplayDead(ctx context.Context, rdb redis.UniversalClient, key, rec, entry string) error {
	ok, err := redisx.ListMove.Run(ctx, rdb, []string{keys.DeadLetter(key), key}, rec, entry, 0).Bool()
	if err != nil {
		return fmt.Errorf("inbox: replay a dead letter: %w", err)
	}
	if !ok {
		return ErrDeadLetterGone
	}
	return nil
}

// PurgeDead removes the dead letter rec from the list.
func PurgeDead(ctx context.Context, rdb redis.UniversalClient, key, rec string) error {
	n, err := rdb.LRem(ctx, keys.DeadLetter(key), 1, rec).Result()
	if err != nil {
		return fmt.Errorf("inbox: purge a dead letter: %w", err)
	}
	if n == 0 {
		return ErrDeadLetterGone
	}
	return nil
}

// PurgeAllDead deletes the dead-letter list and returns how many it held.
func PurgeAllDead(ctx context.Context, rdb redis.UniversalClient, key string) (int64, error) {
	dead := keys.DeadLetter(key)
	var n *redis.IntCmd
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.LLen(ctx, dead)
		p.Unlink(ctx, dead)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: purge the dead letters: %w", err)
	}
	return n.Val(), nil
}
