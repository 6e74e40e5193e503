package devmode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// demoUserCache is the demo's user cache with a tag: each user joins
// team:{team}, team being id % 3 (a column computed by the queries, portable
// to PostgreSQL, MySQL and SQLite).
func demoUserCache(cs config.CacheSpec) config.CacheSpec {
	cs.ByIDs = "SELECT id, email, full_name AS name, id % 3 AS team FROM users WHERE id IN (?)"
	cs.All = "SELECT id, email, full_name AS name, id % 3 AS team FROM users WHERE id > ? ORDER BY id LIMIT ?"
	cs.Tags = []string{"team:{team}"}
	return cs
}

// demoTag is the tag DemoInvalidateTag invalidates: users 12 and 15 carry
// it, user 13 (team 1) does not.
const demoTag = "team:0"

// DemoInvalidateTag warms users 12, 13 and 15, then invalidates the tag
// team:0: the keys carrying it (users 12 and 15) go, user 13 stays, and
// subscribers get one event naming the tag. It expects a running worker with
// the demo configuration.
func DemoInvalidateTag(ctx context.Context, client *tasks.Client, rdb redis.UniversalClient, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, "[tag] "+format+"\n", a...) }
	received, stop, err := subscribeEvents(ctx, rdb)
	if err != nil {
		return err
	}
	defer stop()
	if _, err := client.WarmCacheIDs(ctx, "user", []string{"12", "13", "15"}); err != nil {
		return err
	}
	if err := waitCached(ctx, rdb, "user:12", "user:13", "user:15"); err != nil {
		return err
	}
	tagKey := keys.Default().Tag(demoTag)
	say("users 12, 13 and 15 cached; 12 and 15 carry tag %s (set %s holds %d keys), 13 carries team:1", demoTag, tagKey, rdb.SCard(ctx, tagKey).Val())
	info, err := client.InvalidateTag(ctx, demoTag)
	if err != nil {
		return err
	}
	say("enqueued %s %s: tag %s", info.Type, info.ID, demoTag)
	e, err := waitEvent(ctx, received, func(e events.Event) bool { return e.TaskID == info.ID })
	if err != nil {
		return err
	}
	say("subscriber got: %s tag=%s", describeEvent(e), e.Tag)
	say("user:12 exists: %d, user:15 exists: %d, tag set exists: %d; user:13 (team:1) exists: %d (it stays cached until the next round: try redis-cli HGETALL user:13)",
		rdb.Exists(ctx, "user:12").Val(), rdb.Exists(ctx, "user:15").Val(), rdb.Exists(ctx, tagKey).Val(), rdb.Exists(ctx, "user:13").Val())
	return nil
}

// subscribeEvents subscribes to the events channel and returns once the
// subscription is live; stop ends it.
func subscribeEvents(ctx context.Context, rdb redis.UniversalClient) (<-chan events.Event, func(), error) {
	sctx, cancel := context.WithCancel(ctx)
	received := make(chan events.Event, 64)
	subscribed := make(chan struct{}, 8)
	done := make(chan error, 1)
	sub := events.Subscriber{Client: rdb, Channel: events.DefaultChannel, Logger: slog.New(slog.DiscardHandler),
		OnSubscribed: func() { subscribed <- struct{}{} }}
	go func() {
		done <- sub.Run(sctx, func(e events.Event) {
			select {
			case received <- e:
			default: // the demo only waits for its own events
			}
		})
	}()
	stop := func() { cancel(); <-done }
	select {
	case <-subscribed:
		return received, stop, nil
	case <-ctx.Done():
		stop()
		return nil, nil, fmt.Errorf("subscribe to events: %w", ctx.Err())
	}
}

// demoTickEntry fires every few seconds so that each round sees a tick.
const demoTickEntry = "demo-tick"

// DemoSchedulerTick waits for the scheduler's next tick of demoTickEntry and
// reports the tick the scheduler recorded and the job it enqueued.
func DemoSchedulerTick(ctx context.Context, rdb redis.UniversalClient, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, "[schedule] "+format+"\n", a...) }
	lastTick := func() int64 {
		v, _ := rdb.HGet(ctx, keys.Default().SchedulerLastTick(), demoTickEntry).Result()
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	before := lastTick()
	say("waiting for the scheduler's next %s tick (%s, %s)", demoTickEntry, demoTickEvery, tasks.KindRateLimitPrune)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if now := lastTick(); now > before {
			say("tick %s fired: the scheduler enqueued %s once (whatever the replica count), recorded in %s",
				time.Unix(now, 0).Format(time.TimeOnly), tasks.KindRateLimitPrune, keys.Default().SchedulerLastTick())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s tick: %w", demoTickEntry, ctx.Err())
		case <-t.C:
		}
	}
}
