package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// lockedBuf is a buffer a command writes while the test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// tailEvents runs `cachekeeper events args...` until it exits; publish is
// called once it listens.
func tailEvents(t *testing.T, r *testenv.Redis, publish func(*events.Publisher), args ...string) (int, string, string) {
	t.Helper()
	var out, errb lockedBuf
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, append([]string{"events", "--redis-url", r.URL}, args...), cli.IO{Stdout: &out, Stderr: &errb, Env: func(string) string { return "" }})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "listening on") {
		select {
		case code := <-done:
			t.Fatalf("events exited with %d before listening: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("events not listening within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pub, err := events.NewPublisher(r.Client, events.DefaultChannel, 100)
	if err != nil {
		t.Fatal(err)
	}
	publish(pub)
	select {
	case code := <-done:
		return code, out.String(), errb.String()
	case <-time.After(15 * time.Second):
		t.Fatal("events did not exit after --count events")
		return 0, "", ""
	}
}

func TestEventsTailsHumanReadableAndFilters(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	code, out, errOut := tailEvents(t, r, func(p *events.Publisher) {
		_ = p.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "post", IDs: []string{"9"}, TaskID: "t0"})
		_ = p.Publish(ctx, events.Event{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"1", "2"}, Keys: []string{"user:1", "user:2"}, TaskID: "t1"})
		_ = p.Publish(ctx, events.Event{Type: events.TypeWarmed, Cache: "user", IDs: []string{"3"}, Keys: []string{"user:3"}})
	}, "--cache", "user", "--count", "2")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want 2 lines (the post event filtered out)", out)
	}
	for i, want := range []string{"  invalidated  user  ids=1,2  keys=2  task=t1", "  warmed  user  ids=3  keys=1"} {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q, want it to end with %q", i, lines[i], want)
		}
	}
}

func TestEventsJSON(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	code, out, errOut := tailEvents(t, r, func(p *events.Publisher) {
		_ = p.Publish(ctx, events.Event{Type: events.TypeInvalidated, Pattern: "page:*", Keys: []string{"page:1"}, KeyCount: 1500, TaskID: "t2"})
	}, "-o", "json", "--count", "1")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var e events.Event
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Pattern != "page:*" || e.KeyCount != 1500 || e.TaskID != "t2" {
		t.Fatalf("output %q: %+v (%v)", out, e, err)
	}
}

func TestEventsUsageErrors(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "user"}, `takes no arguments, got "user"`},
		{[]string{"events", "--count", "-1"}, "--count must not be negative"},
		{[]string{"events", "-o", "yaml"}, "--output"},
		{[]string{"events", "--channel", ""}, "--channel must not be empty"},
	} {
		var out, errb lockedBuf
		code := cli.Run(context.Background(), append(tc.args, "--redis-url", r.URL), cli.IO{Stdout: &out, Stderr: &errb})
		if code != cli.ExitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
