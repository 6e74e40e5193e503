package session_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/session"
)

func Example() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	store, err := session.New(rdb, session.Config{}) // the FastAPI guide's layout
	if err != nil {
		panic(err)
	}
	token, _ := store.Create(ctx, "42", map[string]string{"ip": "10.0.0.1"})
	s, _ := store.Get(ctx, token)
	fmt.Println("user:", s.UserID, "ip:", s.Data["ip"], "ttl:", s.TTL)
	_ = store.Touch(ctx, token)
	n, _ := store.RevokeAll(ctx, "42")
	fmt.Println("revoked:", n)
	// Output:
	// user: 42 ip: 10.0.0.1 ttl: 24h0m0s
	// revoked: 1
}
