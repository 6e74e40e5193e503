package devmode_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/devmode"
)

func TestDemoWarmOnEmbeddedServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out demoBuf
	var demoErr error
	err := devmode.Run(ctx, devmode.Options{
		Out: &out, Rounds: 1, Interval: time.Millisecond,
		Ready: func(env devmode.Env) {
			dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
			defer dcancel()
			demoErr = devmode.DemoWarm(dctx, env.Client, env.Redis, &out)
		},
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if demoErr != nil {
		t.Fatalf("DemoWarm: %v\n%s", demoErr, out.String())
	}
	for _, want := range []string{
		"by one batched cache:warm",
		"user:1 = map[email:user1@example.com id:1 name:Demo User 1]",
		`"deleted":1`,
		"user:9999 (no such row) exists: 0",
		"cache:warm_all: 50 of 50 rows",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q:\n%s", want, out.String())
		}
	}
}
