package events_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// Event times are UTC, exactly six fraction digits and "+00:00".
func TestEventTimeLayout(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
	data, err := json.Marshal(events.Event{Type: events.TypeWarmed, Cache: "user", Time: at})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["time"] != "2026-01-02T02:04:05.123456+00:00" {
		t.Fatalf("time on the wire %v, want 2026-01-02T02:04:05.123456+00:00", raw["time"])
	}
	e, err := events.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(at.Truncate(time.Microsecond)) || e.Cache != "user" || e.Type != events.TypeWarmed {
		t.Fatalf("decoded %+v, want the event back with its time cut to microseconds", e)
	}
	// A zero fraction keeps its six digits (Python before 3.11 wants 3 or 6).
	data, _ = json.Marshal(events.Event{Type: events.TypeWarmed, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if !strings.Contains(string(data), `"time":"2026-01-02T03:04:05.000000+00:00"`) {
		t.Fatalf("zero fraction: %s", data)
	}
}

// Every Python found here parses the time with datetime.fromisoformat: Debian's,
// and the older ones a pyenv keeps (3.7 to 3.10 refuse "Z" and nanoseconds).
func TestEventTimeParsesInEveryPython(t *testing.T) {
	t.Parallel()
	bin, _ := testenv.Python(t)
	pythons := []string{bin}
	if home, err := os.UserHomeDir(); err == nil {
		old, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", "3.*", "bin", "python3"))
		for _, p := range old {
			v := filepath.Base(filepath.Dir(filepath.Dir(p))) // 3.7.16
			if minor, ok := strings.CutPrefix(v, "3."); ok && !strings.HasPrefix(minor, "6.") && !strings.HasPrefix(minor, "5.") {
				pythons = append(pythons, p) // fromisoformat exists from 3.7
			}
		}
	}
	data, _ := json.Marshal(events.Event{Type: events.TypeInvalidated, Time: time.Date(2026, 1, 2, 3, 4, 5, 987654321, time.UTC)})
	var raw struct{ Time string }
	_ = json.Unmarshal(data, &raw)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`).MatchString(raw.Time) {
		t.Fatalf("time %q is not YYYY-MM-DDTHH:MM:SS.ffffff+00:00", raw.Time)
	}
	for _, py := range pythons {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c", `import datetime, sys; t = datetime.datetime.fromisoformat(sys.argv[1]); print(sys.version.split()[0], t.isoformat())`, raw.Time).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: fromisoformat(%q) failed: %v\n%s", py, raw.Time, err, out)
			continue
		}
		if !strings.HasSuffix(strings.TrimSpace(string(out)), "2026-01-02T03:04:05.987654+00:00") {
			t.Errorf("%s parsed %q as %s", py, raw.Time, out)
		}
		t.Logf("python %s", strings.TrimSpace(string(out)))
	}
}

// What the worker's Publisher sends, the Python subscriber reads back field
// for field, over a real Redis.
func TestPythonSubscriberDecodesPublishedEvents(t *testing.T) {
	t.Parallel()
	bin, src := testenv.Python(t)
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent := []events.Event{
		{Type: events.TypeInvalidated, Cache: "user", IDs: []string{"1", "2"}, Keys: []string{"user:1", "user:2"}, TaskID: "t1",
			Time: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)},
		{Type: events.TypeWarmed, Cache: "user", IDs: []string{"1", "2", "3"}, Keys: []string{"user:1", "user:2", "user:3"}, KeyCount: 5},
		{Type: events.TypeInvalidated, Pattern: "user:*", KeyCount: 1200},
		{Type: events.TypeInvalidated, Tag: "org:7", Keys: []string{"user:9"}},
		{Type: events.TypeSessionRevoked, UserID: "42", KeyCount: 3},
	}
	cmd := exec.CommandContext(ctx, bin, "-c", `
import json, sys, redis
from cachekeeper import Subscriber
n = int(sys.argv[2])
sub = Subscriber(redis.Redis.from_url(sys.argv[1]), on_subscribed=lambda: print("subscribed", flush=True))
for ev in sub:
    d = ev.as_dict()
    d["time"] = ev.time.isoformat()
    d["capped"] = ev.capped
    print(json.dumps(d), flush=True)
    n -= 1
    if n == 0:
        break
`, r.URL, "5")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+src, "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "subscribed" {
		t.Fatalf("python subscriber did not subscribe: %q", lines.Text())
	}
	pub, err := events.NewPublisher(r.Client, events.DefaultChannel, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sent {
		if err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range sent {
		if !lines.Scan() {
			t.Fatalf("python stopped after %d events", i)
		}
		var got struct {
			Type, Cache, Pattern, Tag, Time string
			UserID                          string `json:"user_id"`
			TaskID                          string `json:"task_id"`
			IDs, Keys                       []string
			KeyCount                        int  `json:"key_count"`
			Capped                          bool `json:"capped"`
		}
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, lines.Text())
		}
		wantCount := max(e.KeyCount, len(e.Keys), len(e.IDs))
		wantKeys := e.Keys[:min(len(e.Keys), 3)]
		if got.Type != e.Type || got.Cache != e.Cache || got.Pattern != e.Pattern || got.Tag != e.Tag || got.UserID != e.UserID ||
			got.TaskID != e.TaskID || got.KeyCount != wantCount || strings.Join(got.Keys, ",") != strings.Join(wantKeys, ",") ||
			got.Capped != (strings.HasPrefix(e.Type, "cache.") && wantCount > max(len(wantKeys), min(len(e.IDs), 3))) {
			t.Errorf("event %d: python read %+v from %+v", i, got, e)
		}
		pt, err := time.Parse(time.RFC3339Nano, got.Time)
		if err != nil {
			t.Errorf("event %d: python's time %q: %v", i, got.Time, err)
		} else if !e.Time.IsZero() && !pt.Equal(e.Time.Truncate(time.Microsecond)) {
			t.Errorf("event %d: python's time %s, want %s", i, pt, e.Time.Truncate(time.Microsecond))
		}
	}
	t.Logf("%d events published by Go read back by the Python subscriber", len(sent))
}
