package devmode_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/cachekeeper/cachekeeper/internal/devmode"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestDemoSessions(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	m.ClockTTL(true) // as in dev mode
	embedded := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer embedded.Close()
	for name, rdb := range map[string]*redis.Client{"redis-server": testenv.NewRedis(t).Client, "miniredis": embedded} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rdb.Set(ctx, "session:real-app", "untouched", 0)
			var out bytes.Buffer
			for round := 0; round < 2; round++ { // dev mode repeats it
				out.Reset()
				if err := devmode.DemoSessions(ctx, rdb, &out); err != nil {
					t.Fatalf("round %d: %v\n%s", round, err, out.String())
				}
			}
			for _, want := range []string{
				"expired 1 (by age 1, idle 0), TTL given to 1, index tokens pruned 1, unparseable 0",
				"session:revoke alice: 2 sessions deleted via the index",
				"request 3 of 203.0.113.7: allowed, 0 left",
				"request 4 of 203.0.113.7: refused",
				"removed 3 entries",
				"TTL restored on 1",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if testing.Verbose() {
				t.Log("\n" + out.String())
			}
			for _, k := range rdb.Keys(ctx, "*").Val() {
				if !strings.HasPrefix(k, "demo:") && k != "session:real-app" {
					t.Errorf("demo wrote %q outside demo:", k)
				}
			}
			if rdb.Get(ctx, "session:real-app").Val() != "untouched" {
				t.Error("demo touched an application key")
			}
		})
	}
}
