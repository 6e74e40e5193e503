package cache_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/cache"
	"github.com/cachekeeper/cachekeeper/config"
)

// An application reads a cached user by id. On a miss the first reader of
// the fleet loads the row with the cache's by_ids query and fills the key
// (fenced like the worker's warms); concurrent readers wait for that fill.
func ExampleReader_Get() {
	ctx := context.Background()
	// In production: the worker's Redis and database. Here an embedded Redis
	// (without Redis Functions: the reader sends the same scripts by
	// EVALSHA) and an in-memory SQLite keep the example self-contained.
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	db := sqlx.MustOpen("sqlite", "file:example_get?mode=memory&cache=shared")
	defer db.Close()
	db.MustExec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, full_name TEXT)`)
	db.MustExec(`INSERT INTO users VALUES (42, 'ada@example.com', 'Ada')`)

	cfg := config.Default()
	cfg.Caches = config.DemoCaches() // user:{id} from SELECT id, email, full_name AS name ...
	reader, err := cache.New(ctx, cfg, cache.Options{Redis: rdb, DB: db})
	if err != nil {
		panic(err)
	}
	user, err := reader.Get(ctx, "user", 42)
	if err != nil {
		panic(err)
	}
	fmt.Println(user["email"], user["name"])
	fmt.Println("cached:", rdb.HGet(ctx, "user:42", "email").Val())

	_, err = reader.Get(ctx, "user", 7)
	fmt.Println(errors.Is(err, cache.ErrNotFound))
	// Output:
	// ada@example.com Ada
	// cached: ada@example.com
	// true
}

// A loader of the application's own replaces the cache's query; the fill is
// leased and fenced all the same.
func ExampleReader_GetWith() {
	ctx := context.Background()
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	cfg := config.Default()
	cfg.Caches = config.DemoCaches()
	reader, err := cache.New(ctx, cfg, cache.Options{Redis: rdb}) // no DB: loaders only
	if err != nil {
		panic(err)
	}
	load := func(ctx context.Context, id string) (map[string]string, error) {
		return map[string]string{"id": id, "email": "grace@example.com", "name": "Grace"}, nil
	}
	user, err := reader.GetWith(ctx, "user", 7, load)
	if err != nil {
		panic(err)
	}
	fmt.Println(user["name"], rdb.HGet(ctx, "user:7", "name").Val())
	// Output:
	// Grace Grace
}
