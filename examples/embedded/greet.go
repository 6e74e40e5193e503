package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// GreetArgs is the payload of the application's own kind, example:greet.
// The type is the whole declaration: its name (Kind), its check
// (Validate), and its queue, retries and timeout (KindDefaults).
type GreetArgs struct {
	Name string `json:"name"`
}

// GreetingsChannel is where the greet handler publishes.
const GreetingsChannel = "example:greetings"

// Kind names the kind; it is part of the wire format.
func (GreetArgs) Kind() string { return "example:greet" }

// Validate refuses a greeting without a name.
func (a GreetArgs) Validate() error {
	if strings.TrimSpace(a.Name) == "" {
		return &tasks.FieldError{Kind: "example:greet", Field: "name", Msg: "must not be empty"}
	}
	return nil
}

// KindDefaults puts greetings on a queue of their own, which only workers
// that handle example:greet serve.
func (GreetArgs) KindDefaults() tasks.KindDefaults {
	return tasks.KindDefaults{Queue: "example", MaxRetry: 3, Timeout: 30 * time.Second}
}

// greetHandler publishes "hello <name>" on GreetingsChannel.
func greetHandler(rdb redis.UniversalClient) worker.HandlerFunc[GreetArgs] {
	return func(ctx context.Context, job *worker.Job[GreetArgs]) error {
		if rdb == nil {
			return errors.New("greet: no Redis client")
		}
		return rdb.Publish(ctx, GreetingsChannel, "hello "+job.Args.Name).Err()
	}
}
