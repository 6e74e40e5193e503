package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/ratelimit"
)

func Example() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	// Two requests per minute per client IP, in the FastAPI guide's layout.
	l, err := ratelimit.New(rdb, ratelimit.Config{Limit: 2, Window: time.Minute})
	if err != nil {
		panic(err)
	}
	for i := 0; i < 3; i++ {
		res, _ := l.Allow(context.Background(), "203.0.113.7")
		fmt.Println(res.Allowed, res.Remaining)
	}
	// Output:
	// true 1
	// true 0
	// false 0
}
