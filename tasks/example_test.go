package tasks_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Application code enqueues jobs with typed arguments; a bad argument is
// refused before anything reaches Redis.
func ExampleClient() {
	// In production: asynq.RedisClientOpt{Addr: "redis:6379"}. Here an
	// embedded Redis keeps the example self-contained.
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()

	client, err := tasks.NewClient(asynq.RedisClientOpt{Addr: mr.Addr()})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	// The row of user 42 changed: drop it from the cache (critical queue).
	info, err := client.InvalidateCache(ctx, "user", 42)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Type, info.Queue, info.State)

	// Tell subscribers in ten minutes.
	info, err = client.Publish(ctx, "news", "maintenance at noon", tasks.ProcessIn(10*time.Minute))
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Type, info.Queue, info.State)

	// Invalid arguments are rejected and nothing is sent.
	_, err = client.InvalidatePattern(ctx, "*")
	fmt.Println(err)
	// Output:
	// cache:invalidate critical pending
	// notify:publish default scheduled
	// cache:invalidate_pattern: field "pattern": "*" matches every key; set allow_all (CLI: --yes) if you mean it
}

// WarmCache is cheap enough for every request that touches a row: it adds
// the id to the cache's pending set (one short script, no job), and the
// worker turns the pending ids into one cache:warm job per batch, each id
// read once however often it was asked for.
func ExampleClient_WarmCache() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	client, err := tasks.NewClient(asynq.RedisClientOpt{Addr: mr.Addr()})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx := context.Background()

	for _, id := range []int{42, 7, 42} {
		if err := client.WarmCache(ctx, "user", id); err != nil {
			panic(err)
		}
	}
	pending, _ := mr.ZMembers("cachekeeper:warm:{user}:pending")
	fmt.Println(pending)

	fmt.Println(client.WarmCache(ctx, "user"))
	// Output:
	// [7 42]
	// cache:warm: field "ids": must not be empty
}
