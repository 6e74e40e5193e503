package events_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// tail runs a Subscriber in the background and hands over what it receives.
type tail struct {
	events     chan events.Event
	subscribed chan struct{}
	done       chan error
	cancel     context.CancelFunc
}

func startTail(t *testing.T, s events.Subscriber) *tail {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tl := &tail{events: make(chan events.Event, 100), subscribed: make(chan struct{}, 10), done: make(chan error, 1), cancel: cancel}
	s.OnSubscribed = func() { tl.subscribed <- struct{}{} }
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	go func() { tl.done <- s.Run(ctx, func(e events.Event) { tl.events <- e }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-tl.done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
	tl.waitSubscribed(t)
	return tl
}

func (tl *tail) waitSubscribed(t *testing.T) {
	t.Helper()
	select {
	case <-tl.subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("not subscribed within 10s")
	}
}

func (tl *tail) next(t *testing.T) events.Event {
	t.Helper()
	select {
	case e := <-tl.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return events.Event{}
	}
}

func (tl *tail) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-tl.events:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(d):
	}
}

func publisher(t *testing.T, rdb redis.UniversalClient, channel string, maxKeys int) *events.Publisher {
	t.Helper()
	p, err := events.NewPublisher(rdb, channel, maxKeys)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSubscribeDeliversEventsInOrder(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: r.Client})
	pub := publisher(t, r.Client, events.DefaultChannel, 2)
	for i, id := range []string{"1", "2", "3"} {
		e := events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{id}, Keys: []string{"a", "b", "c"}, TaskID: "t" + id}
		if i == 2 {
			e.Type = events.TypeWarmed
		}
		if err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"1", "2", "3"} {
		e := tl.next(t)
		if e.IDs[0] != id || e.TaskID != "t"+id || e.Cache != "user" {
			t.Fatalf("event %d = %+v, want ids [%s]", i, e, id)
		}
		if len(e.Keys) != 2 || e.KeyCount != 3 || len(e.IDs) != 1 {
			t.Errorf("event %d: keys %v, key_count %d; want 2 keys listed of 3", i, e.Keys, e.KeyCount)
		}
		if e.Missed || e.Time.IsZero() {
			t.Errorf("event %d: missed=%v time=%v", i, e.Missed, e.Time)
		}
	}
}

func TestSubscribeSignalsGapAfterDroppedConnection(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: r.Client, Channel: "app:events", MinBackoff: 10 * time.Millisecond})
	pub := publisher(t, r.Client, "app:events", 10)
	if err := pub.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"1"}}); err != nil {
		t.Fatal(err)
	}
	if e := tl.next(t); e.Missed || e.IDs[0] != "1" {
		t.Fatalf("first event = %+v", e)
	}
	// Drop the subscriber's connection, as a Redis restart or a network
	// failure would.
	if n, err := r.Client.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub: killed %d, err %v", n, err)
	}
	tl.waitSubscribed(t)
	gap := tl.next(t)
	if !gap.Missed || gap.Type != events.TypeMissed || gap.Time.IsZero() {
		t.Fatalf("after reconnect got %+v, want a missed-events signal", gap)
	}
	if err := pub.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"2"}}); err != nil {
		t.Fatal(err)
	}
	if e := tl.next(t); e.Missed || e.IDs[0] != "2" {
		t.Fatalf("event after reconnect = %+v", e)
	}
	tl.none(t, 100*time.Millisecond)
}

func TestSubscribeReplacesSilentConnection(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: r.Client, HealthCheck: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	// A paused server answers nothing, not even PING: the subscriber must
	// give up on the connection and report a gap once it is back.
	if err := r.Client.Do(ctx, "CLIENT", "PAUSE", "600", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	tl.waitSubscribed(t)
	if e := tl.next(t); !e.Missed {
		t.Fatalf("got %+v, want a missed-events signal", e)
	}
}

func TestSubscribeSkipsForeignMessages(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: r.Client})
	if err := r.Client.Publish(ctx, events.DefaultChannel, "not json").Err(); err != nil {
		t.Fatal(err)
	}
	if err := publisher(t, r.Client, events.DefaultChannel, 10).Publish(ctx, events.Event{Type: events.TypeDeleted, Cache: "user", IDs: []string{"9"}}); err != nil {
		t.Fatal(err)
	}
	if e := tl.next(t); e.Type != events.TypeDeleted || e.IDs[0] != "9" {
		t.Fatalf("got %+v, want the deleted event only", e)
	}
	tl.none(t, 50*time.Millisecond)
}

func TestSubscribeShardedOnCluster(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: cc, Channel: "shop:events"})
	pub := publisher(t, cc, "shop:events", 10)
	if err := pub.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"4"}}); err != nil {
		t.Fatal(err)
	}
	if e := tl.next(t); e.IDs[0] != "4" {
		t.Fatalf("got %+v", e)
	}
	// The subscription is a sharded one: it shows under PUBSUB SHARDCHANNELS
	// on the master owning the channel's slot.
	var found bool
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		chans, err := c.PubSubShardChannels(ctx, "shop:*").Result()
		if len(chans) > 0 {
			found = true
		}
		return err
	})
	if err != nil || !found {
		t.Fatalf("no sharded subscription found (err %v)", err)
	}
}

func TestSubscriberRejectsBadSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if err := (&events.Subscriber{}).Run(ctx, func(events.Event) {}); err == nil {
		t.Error("nil client accepted")
	}
	r := testenv.NewMiniredis(t)
	if err := events.Subscribe(ctx, r.Client, nil); err == nil {
		t.Error("nil callback accepted")
	}
	s := events.Subscriber{Client: r.Client, MinBackoff: time.Minute, MaxBackoff: time.Second}
	if err := s.Run(ctx, func(events.Event) {}); err == nil {
		t.Error("MinBackoff above MaxBackoff accepted")
	}
}

func TestSubscribeReturnsWhenRedisIsDownAndCtxEnds(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	s := events.Subscriber{Client: rdb, MinBackoff: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Run(ctx, func(e events.Event) { t.Errorf("event %+v from a server that is down", e) }); err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run took %s to notice ctx end", d)
	}
}

func TestPublisherCapsIDsAndKeys(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	tl := startTail(t, events.Subscriber{Client: r.Client})
	ids := make([]string, 250)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	if err := publisher(t, r.Client, events.DefaultChannel, 100).Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: ids}); err != nil {
		t.Fatal(err)
	}
	if e := tl.next(t); len(e.IDs) != 100 || e.KeyCount != 250 || e.IDs[99] != "99" {
		t.Fatalf("got %d ids, key_count %d; want the first 100 of 250", len(e.IDs), e.KeyCount)
	}
}
