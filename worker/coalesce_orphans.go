package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
)

// orphanCheckEvery is how often a worker looks for warms pending for caches
// it does not configure.
const orphanCheckEvery = time.Minute

// orphanWatch reports ids that WarmCache left pending for a cache this
// worker does not configure when nobody takes them either: the oldest
// pending id is the same at two checks in a row. That is a misspelt cache
// name in the application, or a client whose key prefix no worker uses;
// before coalescing such a warm became a job archived as "unknown cache".
// A fleet whose workers configure different caches is not reported: the
// worker that has the cache drains it between two checks.
type orphanWatch struct {
	rdb        redis.UniversalClient
	keys       keys.Keys
	configured map[string]bool
	logger     *slog.Logger
	next       time.Time
	// oldest holds, per unconfigured cache with pending ids, the score of
	// its oldest pending id at the last check.
	oldest map[string]float64
}

func newOrphanWatch(rdb redis.UniversalClient, k keys.Keys, caches []string, logger *slog.Logger) *orphanWatch {
	o := &orphanWatch{rdb: rdb, keys: k, configured: map[string]bool{}, logger: logger, oldest: map[string]float64{}}
	for _, c := range caches {
		o.configured[c] = true
	}
	return o
}

// check looks at the registry of cache names once per orphanCheckEvery.
func (o *orphanWatch) check(ctx context.Context, now time.Time) {
	if now.Before(o.next) {
		return
	}
	o.next = now.Add(orphanCheckEvery)
	names, err := o.rdb.SMembers(ctx, o.keys.WarmCaches()).Result()
	if err != nil {
		o.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms: read the cache registry", slog.String("error", err.Error()))
		return
	}
	for _, name := range names {
		if o.configured[name] {
			continue
		}
		key := o.keys.WarmPending(name)
		oldest, err := o.rdb.ZRangeWithScores(ctx, key, 0, 0).Result()
		if err != nil || len(oldest) == 0 {
			delete(o.oldest, name)
			continue
		}
		prev, seen := o.oldest[name]
		o.oldest[name] = oldest[0].Score
		if !seen || prev != oldest[0].Score {
			continue
		}
		n, _ := o.rdb.ZCard(ctx, key).Result()
		o.logger.LogAttrs(ctx, slog.LevelWarn, "warms are pending for a cache that no worker takes: is the cache name misspelt in WarmCache, or the client's key prefix not the workers'?",
			slog.String("cache", name), slog.Int64("pending_ids", n), slog.String("key", key))
	}
}
