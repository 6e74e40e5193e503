package changes_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/redis/go-redis/v9"
)

// New checks the configuration before it touches anything: these streams
// are refused without a single connection (the Redis client below is never
// dialled).
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	users := map[string]config.CacheSpec{"user": {
		Key: "user:{id}", TTL: time.Hour, ByIDs: "SELECT id, email FROM users WHERE id IN (?)",
		Changes: config.ChangeSources{{Table: "users", ID: "id"}},
	}}
	pg := config.DatabaseConfig{URL: "postgres://cachekeeper@db.internal:5432/app"}

	_, err := changes.New(changes.Config{Caches: users, Database: pg}, nil)
	fmt.Println(err)

	_, err = changes.New(changes.Config{Caches: users, Database: pg, Redis: rdb, Name: "Users-Stream"}, nil)
	fmt.Println(err)

	_, err = changes.New(changes.Config{Caches: map[string]config.CacheSpec{}, Database: pg, Redis: rdb}, nil)
	fmt.Println(errors.Is(err, changes.ErrSetup), err)

	_, err = changes.New(changes.Config{Caches: users, Database: config.DatabaseConfig{URL: "sqlite://app.db"}, Redis: rdb}, nil)
	fmt.Println(errors.Is(err, config.ErrNoChangeStream))
	// Output:
	// changes: Config.Redis is required
	// changes: stream name "Users-Stream" must be 1-63 lower-case letters, digits or _ (it names the PostgreSQL replication slot)
	// true change stream setup: no cache has a changes: block; add one such as changes: {table: users, id: id}
	// true
}

// Running a stream: it waits for the lease, creates the publication and
// the replication slot when missing, and enqueues a fenced cache:invalidate
// job for the keys of every row changed by anyone, until ctx ends. (Compiled
// only: it needs a PostgreSQL with wal_level=logical and a Redis.)
func ExampleStream_Run() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	s, err := changes.New(changes.Config{
		Caches: map[string]config.CacheSpec{"user": {
			Key: "user:{id}", TTL: time.Hour, ByIDs: "SELECT id, email FROM users WHERE id IN (?)",
			Changes: config.ChangeSources{{Table: "users", ID: "id"}},
		}},
		Database: config.DatabaseConfig{URL: "postgres://cachekeeper@127.0.0.1:5432/app"},
		Redis:    rdb,
	}, slog.Default())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Run(ctx); errors.Is(err, changes.ErrSetup) {
		fmt.Println("fix the database first:", err) // wal_level, REPLICATION, a missing table
	}
}
