package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// orphanCheckEvery is how often a worker renews the markers of the caches
// it serves and looks for warms pending for caches nobody serves.
const orphanCheckEvery = time.Minute

// servedTTL is how long a worker's marker says a cache is served: long
// enough to survive a missed renewal.
const servedTTL = 3 * orphanCheckEvery

// orphanWatch reports ids that WarmCache left pending for a cache that no
// running worker serves: a misspelt cache name in the application, or a
// client whose key prefix no worker uses (before coalescing such a warm
// became a job archived as "unknown cache"). Every worker marks the caches
// it serves (keys.WarmServed, with a TTL) once per orphanCheckEvery, so a
// fleet whose workers configure different caches reports nothing. A cache
// name with nothing pending and no worker is dropped from the registry, so
// that it only lists names in use.
type orphanWatch struct {
	rdb    redis.UniversalClient
	keys   keys.Keys
	caches []string
	served map[string]bool
	logger *slog.Logger
	// next is when the next check is due; the first comes one interval
	// after start, so that workers started together have marked theirs.
	next time.Time
}

func newOrphanWatch(rdb redis.UniversalClient, k keys.Keys, caches []string, logger *slog.Logger) *orphanWatch {
	o := &orphanWatch{rdb: rdb, keys: k, caches: caches, served: map[string]bool{}, logger: logger}
	for _, c := range caches {
		o.served[c] = true
	}
	return o
}

// markServed renews the markers of the caches this worker serves.
func (o *orphanWatch) markServed(ctx context.Context) error {
	pipe := o.rdb.Pipeline()
	for _, c := range o.caches {
		pipe.Set(ctx, o.keys.WarmServed(c), "1", servedTTL)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// check renews this worker's markers and reports unserved caches with
// pending ids, once per orphanCheckEvery (a no-op in between).
func (o *orphanWatch) check(ctx context.Context, now time.Time) {
	if o.next.IsZero() {
		o.next = now.Add(orphanCheckEvery)
		o.renew(ctx)
		return
	}
	if now.Before(o.next) {
		return
	}
	o.next = now.Add(orphanCheckEvery)
	o.renew(ctx)
	names, err := o.rdb.SMembers(ctx, o.keys.WarmCaches()).Result()
	if err != nil {
		o.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms: read the cache registry", slog.String("error", err.Error()))
		return
	}
	for _, name := range names {
		if o.served[name] {
			continue
		}
		if n, err := o.rdb.Exists(ctx, o.keys.WarmServed(name)).Result(); err != nil || n > 0 {
			continue // another worker serves it
		}
		key := o.keys.WarmPending(name)
		pending, err := o.rdb.ZCard(ctx, key).Result()
		switch {
		case err != nil:
			continue
		case pending == 0:
			o.rdb.SRem(ctx, o.keys.WarmCaches(), name)
		default:
			o.logger.LogAttrs(ctx, slog.LevelWarn, "warms are pending for a cache that no running worker serves: is the cache name misspelt in WarmCache, or the client's key prefix not the workers'?",
				slog.String("cache", name), slog.Int64("pending_ids", pending), slog.String("key", key))
		}
	}
}

func (o *orphanWatch) renew(ctx context.Context) {
	if err := o.markServed(ctx); err != nil {
		o.logger.LogAttrs(ctx, slog.LevelDebug, "coalesced warms: mark the served caches", slog.String("error", err.Error()))
	}
}
