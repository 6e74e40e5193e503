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

// Each demo step, run on its own against the embedded services, succeeds and
// narrates what the jobs did.
func TestDemoStepsOnEmbeddedServices(t *testing.T) {
	t.Parallel()
	steps := map[string]struct {
		run  func(ctx context.Context, env devmode.Env) error
		want []string
	}{
		"warm": {
			run: func(ctx context.Context, env devmode.Env) error {
				return devmode.DemoWarm(ctx, env.Client, env.Redis, env.Out)
			},
			want: []string{
				"by a coalesced cache:warm",
				"user:1 = map[email:user1@example.com id:1 name:Demo User 1 team:1]",
				`"deleted":1`,
				"user:9999 (no such row) exists: 0",
				"cache:warm_all: 50 of 50 rows",
			},
		},
		"invalidate": {
			run: func(ctx context.Context, env devmode.Env) error {
				return devmode.DemoInvalidate(ctx, env.Client, env.Redis, env.Out)
			},
			want: []string{
				"subscriber got: cache.invalidated cache=user ids=[1] keys=1",
				"user:1 exists: 0",
				"subscriber got: cache.invalidated cache=user ids=[2] keys=1 (coalesced, no job)",
				"subscriber got: cache.invalidated pattern=user:* keys=1",
				"user:3 exists: 0",
			},
		},
		"tag": {
			run: func(ctx context.Context, env devmode.Env) error {
				return devmode.DemoInvalidateTag(ctx, env.Client, env.Redis, env.Out)
			},
			want: []string{
				"12 and 15 carry tag team:0 (set cachekeeper:tag:team:0 holds 2 keys)",
				"subscriber got: cache.invalidated",
				"tag=team:0",
				"user:12 exists: 0, user:15 exists: 0, tag set exists: 0; user:13 (team:1) exists: 1",
			},
		},
		"fence": {
			run: func(ctx context.Context, env devmode.Env) error {
				return devmode.DemoFencedWrite(ctx, env.Client, env.Redis, env.Metrics, env.Gate, env.Out)
			},
			want: []string{
				"a warm of user 30 has read its row and is paused",
				"meanwhile user 30 changed: cache:invalidate",
				`the warm's stale write was skipped (fenced): cachekeeper_fenced_writes_skipped_total{cache="user"} 0 -> 1; user:30 exists: 0`,
			},
		},
		"schedule": {
			run: func(ctx context.Context, env devmode.Env) error {
				return devmode.DemoSchedulerTick(ctx, env.Redis, env.Out)
			},
			want: []string{"waiting for the scheduler's next demo-tick tick", "fired: the scheduler enqueued ratelimit:prune once"},
		},
	}
	for name, step := range steps {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, stepOut demoBuf
			var stepErr error
			err := devmode.Run(ctx, devmode.Options{
				Out: &out, Rounds: 1, Interval: time.Millisecond,
				Ready: func(env devmode.Env) {
					sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
					defer scancel()
					env.Out = &stepOut
					stepErr = step.run(sctx, env)
				},
			})
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			if stepErr != nil {
				t.Fatalf("%s: %v\n%s", name, stepErr, stepOut.String())
			}
			for _, want := range step.want {
				if !strings.Contains(stepOut.String(), want) {
					t.Errorf("narration lacks %q:\n%s", want, stepOut.String())
				}
			}
		})
	}
}
