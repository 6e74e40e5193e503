package devmode_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/devmode"
)

type demoBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (d *demoBuf) Write(p []byte) (int, error) { d.mu.Lock(); defer d.mu.Unlock(); return d.b.Write(p) }
func (d *demoBuf) String() string              { d.mu.Lock(); defer d.mu.Unlock(); return d.b.String() }

func TestDemoInvalidateOnEmbeddedServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out demoBuf
	var demoErr error
	err := devmode.Run(ctx, devmode.Options{
		Out: &out, Rounds: 1, Interval: time.Millisecond,
		Ready: func(env devmode.Env) {
			dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
			defer dcancel()
			demoErr = devmode.DemoInvalidate(dctx, env.Client, env.Redis, &out)
		},
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if demoErr != nil {
		t.Fatalf("DemoInvalidate: %v\n%s", demoErr, out.String())
	}
	for _, want := range []string{
		"subscriber got: cache.invalidated cache=user ids=[1] keys=1",
		"user:1 exists: 0",
		"subscriber got: cache.invalidated cache=user ids=[2] keys=1 task=inbox:",
		"subscriber got: cache.invalidated pattern=user:* keys=1",
		"user:3 exists: 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q:\n%s", want, out.String())
		}
	}
}
