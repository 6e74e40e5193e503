package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/redis/go-redis/v9"
)

// An application instance keeps its own in-process copies of cached users
// and drops them when the worker says they changed; after a dropped
// connection it drops everything, since it may have missed events.
func ExampleSubscribe() {
	srv, err := miniredis.Run() // any Redis; a real one in production
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	var mu sync.Mutex
	local := map[string]string{"user:1": "Ada", "user:2": "Grace"} // the instance's copies
	seen := make(chan events.Event, 10)
	subscribed := make(chan struct{}, 10)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sub := events.Subscriber{
		Client:       rdb,
		Channel:      events.DefaultChannel,
		MinBackoff:   10 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		OnSubscribed: func() { subscribed <- struct{}{} },
	}
	go func() {
		done <- sub.Run(ctx, func(e events.Event) {
			mu.Lock()
			if e.Missed {
				clear(local) // events may be lost: forget every copy
			}
			for _, k := range e.Keys {
				delete(local, k)
			}
			mu.Unlock()
			seen <- e
		})
	}()
	<-subscribed

	// The worker publishes this after invalidating user 1.
	pub, _ := events.NewPublisher(rdb, events.DefaultChannel, 100)
	_ = pub.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"1"}, Keys: []string{"user:1"}})
	e := <-seen
	mu.Lock()
	fmt.Println(e.Type, e.Cache, e.IDs, "left:", len(local))
	mu.Unlock()

	// Redis restarts: the subscriber reconnects and reports the gap.
	srv.Close()
	_ = srv.Restart()
	<-subscribed
	e = <-seen
	mu.Lock()
	fmt.Println(e.Type, e.Missed, "left:", len(local))
	mu.Unlock()

	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// cache.invalidated user [1] left: 1
	// events.missed true left: 0
	// Run: <nil>
}
