package devmode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DemoInvalidate shows the invalidation family on the demo's user cache,
// narrating on out: it warms users 1 to 3, then invalidates user 1 by id,
// user 2 through the Redis-list inbox (as a Python producer would), and
// what is left by the pattern user:*, printing the event each change
// publishes as an application instance subscribed with events.Subscribe
// receives it. It expects a running worker with the demo configuration
// (default events channel and inbox).
func DemoInvalidate(ctx context.Context, client *tasks.Client, rdb redis.UniversalClient, out io.Writer) error {
	sctx, stop := context.WithCancel(ctx)
	defer stop()
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
	defer func() { stop(); <-done }()
	select {
	case <-subscribed:
	case <-ctx.Done():
		return fmt.Errorf("subscribe to events: %w", ctx.Err())
	}
	say := func(format string, a ...any) { fmt.Fprintf(out, "[invalidate] "+format+"\n", a...) }

	// 1. Something to invalidate.
	// Wait for the warm job itself, not for the keys: the previous step's
	// warm_all cached them already, and a warm still in flight when the
	// invalidations below run would have its writes refused (fenced).
	warm, err := client.WarmCacheIDs(ctx, "user", []string{"1", "2", "3"}, tasks.Retention(time.Minute))
	if err != nil {
		return err
	}
	if _, err := waitDone(ctx, asynq.NewInspectorFromRedisClient(rdb), warm); err != nil {
		return err
	}
	say("users 1-3 cached; user:1 = %v", rdb.HGetAll(ctx, "user:1").Val())

	// 2. By id, from Go.
	info, err := client.InvalidateCache(ctx, "user", 1)
	if err != nil {
		return err
	}
	say("enqueued %s %s: cache user, ids [1]", info.Type, info.ID)
	e, err := waitEvent(ctx, received, func(e events.Event) bool { return e.TaskID == info.ID })
	if err != nil {
		return err
	}
	say("subscriber got: %s", describeEvent(e))
	say("user:1 exists: %d (the next read misses and reloads it; a warm that read the row before cannot write it back)", rdb.Exists(ctx, "user:1").Val())

	// 3. Through the inbox, as any language can.
	entry := `{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [2]}}`
	if err := rdb.LPush(ctx, keys.Default().Inbox(), entry).Err(); err != nil {
		return err
	}
	say("pushed onto the inbox, as redis-cli LPUSH %s '%s' would (one cache's ids without options: coalesced with other such invalidations into one fenced batch, no job)", keys.Default().Inbox(), entry)
	e, err = waitEvent(ctx, received, func(e events.Event) bool {
		return e.Type == events.TypeInvalidated && slices.Contains(e.IDs, "2")
	})
	if err != nil {
		return err
	}
	say("subscriber got: %s", describeEvent(e))

	// 4. By pattern: SCAN + UNLINK (fenced: these are cache keys), never KEYS.
	info, err = client.InvalidatePattern(ctx, "user:*")
	if err != nil {
		return err
	}
	say("enqueued %s %s: pattern user:*", info.Type, info.ID)
	e, err = waitEvent(ctx, received, func(e events.Event) bool { return e.TaskID == info.ID })
	if err != nil {
		return err
	}
	say("subscriber got: %s", describeEvent(e))
	say("user:3 exists: %d", rdb.Exists(ctx, "user:3").Val())
	return nil
}

func describeEvent(e events.Event) string {
	s := e.Type
	if e.Cache != "" {
		s += " cache=" + e.Cache
	}
	if len(e.IDs) > 0 {
		s += fmt.Sprintf(" ids=%v", e.IDs)
	}
	if e.Pattern != "" {
		s += " pattern=" + e.Pattern
	}
	s += fmt.Sprintf(" keys=%d", e.KeyCount)
	if e.TaskID == "" {
		return s + " (coalesced, no job)"
	}
	return s + " task=" + e.TaskID
}

func waitEvent(ctx context.Context, ch <-chan events.Event, match func(events.Event) bool) (events.Event, error) {
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e, nil
			}
		case <-ctx.Done():
			return events.Event{}, fmt.Errorf("no event: %w", ctx.Err())
		}
	}
}

func waitCached(ctx context.Context, rdb redis.UniversalClient, keyList ...string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := rdb.Exists(ctx, keyList...).Result()
		if err == nil && n == int64(len(keyList)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v not cached: %w", keyList, ctx.Err())
		case <-t.C:
		}
	}
}
