package tasks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestWarmCacheRefusesBadInputAndSendsNothing(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	client, err := tasks.NewClient(asynq.RedisClientOpt{Addr: mr.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	tooMany := make([]any, tasks.MaxWarmCacheIDs+1)
	for i := range tooMany {
		tooMany[i] = i + 1
	}
	for name, call := range map[string]func() error{
		"no ids":         func() error { return client.WarmCache(ctx, "user") },
		"blank id":       func() error { return client.WarmCache(ctx, "user", " ") },
		"float id":       func() error { return client.WarmCache(ctx, "user", 4.2) },
		"no cache":       func() error { return client.WarmCache(ctx, "", 1) },
		"cache with tag": func() error { return client.WarmCache(ctx, "us{er}", 1) },
		"too many ids":   func() error { return client.WarmCache(ctx, "user", tooMany...) },
	} {
		if err := call(); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("%s: error %v, want ErrInvalidPayload", name, err)
		}
	}
	if keys := mr.Keys(); len(keys) != 0 {
		t.Fatalf("refused calls wrote %v", keys)
	}
}

func TestWarmCacheUsesTheKeyPrefix(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix("app1:")).WarmCache(ctx, "user", 1, "a2"); err != nil {
		t.Fatal(err)
	}
	got, err := mr.ZMembers("app1:warm:{user}:pending")
	if err != nil || len(got) != 2 {
		t.Fatalf("pending under the prefix: %v (%v)", got, err)
	}
	if err := tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix("a b")).WarmCache(ctx, "user", 1); err == nil {
		t.Fatal("a prefix with a space was accepted")
	}
	if _, err := tasks.NewClient(asynq.RedisClientOpt{Addr: mr.Addr()}, tasks.WithKeyPrefix("{x}")); err == nil {
		t.Fatal("NewClient accepted a prefix with braces")
	}
}
