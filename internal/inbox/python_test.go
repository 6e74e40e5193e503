package inbox_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// pyCase is one job as a Python producer would send it: by kind and args
// (then Go also parses the same entry unchecked), or by a producer method.
type pyCase struct {
	Name    string         `json:"name"`
	Kind    string         `json:"kind,omitempty"`
	Args    map[string]any `json:"args,omitempty"`
	Method  string         `json:"method,omitempty"`
	Pos     []any          `json:"pos,omitempty"`
	Kwargs  map[string]any `json:"kwargs,omitempty"`
	Options map[string]any `json:"options,omitempty"`

	want     []tasks.Payload // accepted: the payloads of the entries, in order
	coalesce bool            // accepted warms: coalesced by the bridge
	field    string          // refused: the field both sides name
}

type pyResult struct {
	Entries []string `json:"entries"`
	Error   string   `json:"error"`
	Field   string   `json:"field"`
}

// pyProducer builds the entries of cases with the Python package's producer
// (checked as it checks them) and returns what it made of each.
const pyProducer = `
import datetime, json, sys
from cachekeeper import Options, InvalidPayload, Producer
from cachekeeper.producer import Batch
p = Producer(None, queues=["critical", "default", "low"])
out = []
for c in json.load(sys.stdin):
    opts = c.get("options") or {}
    if "process_at" in opts:
        opts["process_at"] = datetime.datetime.fromisoformat(opts["process_at"])
    o = Options(**opts) if opts else None
    b = Batch(p)
    try:
        if c.get("method"):
            getattr(b, c["method"])(*c.get("pos", []), options=o, **(c.get("kwargs") or {}))
        else:
            b.enqueue(c["kind"], c["args"], o)
        out.append({"entries": [e.decode() for e in b.pending]})
    except InvalidPayload as e:
        out.append({"error": str(e), "field": getattr(e, "field", getattr(e, "what", ""))})
print(json.dumps(out))
`

func manyIDs(from, to int) (py []any, goIDs tasks.IDs) {
	for i := from; i < to; i++ {
		py = append(py, i)
		goIDs = append(goIDs, itoa(i))
	}
	return py, goIDs
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// The Python producer's entries are what the Go inbox parser accepts, with
// the same payloads; and every job the Python producer refuses, the Go side
// refuses too, both naming the same field. Both sides run here, so neither
// can drift from the other.
func TestPythonProducerEntriesParseInGo(t *testing.T) {
	t.Parallel()
	py2500, go2500 := manyIDs(0, 2500)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []pyCase{
		{Name: "warm ids of both types", Kind: tasks.KindWarm, Args: map[string]any{"cache": "user", "ids": []any{1, "a2"}},
			want: []tasks.Payload{&tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1", "a2"}}}, coalesce: true},
		{Name: "warm 2500 ids: three coalesced entries", Method: "warm", Pos: []any{"user", py2500},
			want: []tasks.Payload{&tasks.WarmArgs{Cache: "user", IDs: go2500[:1000]}, &tasks.WarmArgs{Cache: "user", IDs: go2500[1000:2000]}, &tasks.WarmArgs{Cache: "user", IDs: go2500[2000:]}}, coalesce: true},
		{Name: "invalidate with rewarm and options", Method: "invalidate", Pos: []any{"user", []any{7, 8}}, Kwargs: map[string]any{"rewarm": true},
			Options: map[string]any{"queue": "critical", "task_id": "user-7-v2", "max_retry": 3, "timeout": "1m", "retention": 3600},
			want:    []tasks.Payload{&tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{"7", "8"}, Rewarm: true}}},
		{Name: "invalidate keys", Method: "invalidate_keys", Pos: []any{[]any{"page:home", "page:about"}},
			want: []tasks.Payload{&tasks.InvalidateArgs{Keys: []string{"page:home", "page:about"}}}},
		{Name: "invalidate pattern", Method: "invalidate_pattern", Pos: []any{"user:*"}, Kwargs: map[string]any{"max_keys_per_second": 500},
			want: []tasks.Payload{&tasks.InvalidatePatternArgs{Pattern: "user:*", MaxKeysPerSecond: 500}}},
		{Name: "invalidate tag", Method: "invalidate_tag", Pos: []any{"org:7"}, want: []tasks.Payload{&tasks.InvalidateTagArgs{Tag: "org:7"}}},
		{Name: "warm all", Method: "warm_all", Pos: []any{"user"}, Kwargs: map[string]any{"restart": true},
			want: []tasks.Payload{&tasks.WarmAllArgs{Cache: "user", Restart: true}}},
		{Name: "session cleanup", Method: "cleanup_sessions", Kwargs: map[string]any{"pattern": "session:*", "max_age": "2h", "idle_timeout": 1800, "dry_run": true},
			want: []tasks.Payload{&tasks.SessionCleanupArgs{Pattern: "session:*", MaxAge: tasks.Duration(2 * time.Hour), IdleTimeout: tasks.Duration(30 * time.Minute), DryRun: true}}},
		{Name: "session revoke by integer user", Method: "revoke_sessions", Pos: []any{42}, Kwargs: map[string]any{"scan": true},
			want: []tasks.Payload{&tasks.SessionRevokeArgs{UserID: "42", Scan: true}}},
		{Name: "rate limit prune", Method: "prune_rate_limits", Kwargs: map[string]any{"window": 90.5},
			want: []tasks.Payload{&tasks.RateLimitPruneArgs{Window: tasks.Duration(90500 * time.Millisecond)}}},
		{Name: "publish later", Method: "publish", Pos: []any{"orders", "42 shipped"}, Options: map[string]any{"process_in": "30s"},
			want: []tasks.Payload{&tasks.NotifyArgs{Channel: "orders", Message: "42 shipped"}}},
		{Name: "publish at", Method: "publish", Pos: []any{"orders", "x"}, Options: map[string]any{"process_at": at.Format(time.RFC3339)},
			want: []tasks.Payload{&tasks.NotifyArgs{Channel: "orders", Message: "x"}}},

		{Name: "warm without ids", Kind: tasks.KindWarm, Args: map[string]any{"cache": "user", "ids": []any{}}, field: "ids"},
		{Name: "warm blank id", Kind: tasks.KindWarm, Args: map[string]any{"cache": "user", "ids": []any{"1", " "}}, field: "ids[1]"},
		{Name: "warm float id", Kind: tasks.KindWarm, Args: map[string]any{"cache": "user", "ids": []any{1.5}}, field: "ids[0]"},
		{Name: "warm bad cache name", Kind: tasks.KindWarm, Args: map[string]any{"cache": "us er", "ids": []any{1}}, field: "cache"},
		{Name: "warm misspelt field", Kind: tasks.KindWarm, Args: map[string]any{"cache": "user", "id": []any{1}}, field: "id"},
		{Name: "invalidate keys and cache", Kind: tasks.KindInvalidate, Args: map[string]any{"cache": "user", "keys": []any{"a"}}, field: "keys"},
		{Name: "invalidate an internal key", Kind: tasks.KindInvalidate, Args: map[string]any{"keys": []any{"page:1", "cachekeeper:inbox"}}, field: "keys[1]"},
		{Name: "invalidate a queue key", Kind: tasks.KindInvalidate, Args: map[string]any{"keys": []any{"asynq:{default}:pending"}}, field: "keys[0]"},
		{Name: "invalidate keys with rewarm", Kind: tasks.KindInvalidate, Args: map[string]any{"keys": []any{"page:1"}, "rewarm": true}, field: "rewarm"},
		{Name: "invalidate ids without cache", Kind: tasks.KindInvalidate, Args: map[string]any{"ids": []any{1}}, field: "cache"},
		{Name: "pattern matching everything", Kind: tasks.KindInvalidatePattern, Args: map[string]any{"pattern": "*"}, field: "pattern"},
		{Name: "pattern of the queue", Kind: tasks.KindInvalidatePattern, Args: map[string]any{"pattern": "asynq:*"}, field: "pattern"},
		{Name: "pattern negative rate", Kind: tasks.KindInvalidatePattern, Args: map[string]any{"pattern": "u:*", "max_keys_per_second": -1}, field: "max_keys_per_second"},
		{Name: "empty tag", Kind: tasks.KindInvalidateTag, Args: map[string]any{"tag": " "}, field: "tag"},
		{Name: "warm all negative rate", Kind: tasks.KindWarmAll, Args: map[string]any{"cache": "user", "max_keys_per_second": -5}, field: "max_keys_per_second"},
		{Name: "cleanup bad duration", Kind: tasks.KindSessionCleanup, Args: map[string]any{"max_age": "2 hours"}, field: "max_age"},
		{Name: "cleanup everything", Kind: tasks.KindSessionCleanup, Args: map[string]any{"pattern": "*"}, field: "pattern"},
		{Name: "revoke nobody", Kind: tasks.KindSessionRevoke, Args: map[string]any{"user_id": ""}, field: "user_id"},
		{Name: "prune negative window", Kind: tasks.KindRateLimitPrune, Args: map[string]any{"window": "-5s"}, field: "window"},
		{Name: "notify no channel", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "", "message": "x"}, field: "channel"},
		{Name: "negative max_retry", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "c", "message": "x"}, Options: map[string]any{"max_retry": -1}, field: "options.max_retry"},
		{Name: "zero timeout", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "c", "message": "x"}, Options: map[string]any{"timeout": "0s"}, field: "options.timeout"},
		{Name: "negative delay", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "c", "message": "x"}, Options: map[string]any{"process_in": "-1s"}, field: "options.process_in"},
		{Name: "task id with spaces", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "c", "message": "x"}, Options: map[string]any{"task_id": " x"}, field: "options.task_id"},
		{Name: "queue no worker serves", Kind: tasks.KindNotifyPublish, Args: map[string]any{"channel": "c", "message": "x"}, Options: map[string]any{"queue": "nosuch"}, field: "queue"},
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	var results []pyResult
	if err := json.Unmarshal(testenv.RunPython(t, pyProducer, in), &results); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cases) {
		t.Fatalf("python answered %d cases, want %d", len(results), len(cases))
	}
	accepted, refused := 0, 0
	for i, c := range cases {
		r := results[i]
		if c.field != "" {
			refused++
			if r.Error == "" {
				t.Errorf("%s: python accepted %v", c.Name, r.Entries)
				continue
			}
			if r.Field != c.field {
				t.Errorf("%s: python refused naming field %q (%s), want %q", c.Name, r.Field, r.Error, c.field)
			}
			raw, _ := json.Marshal(map[string]any{"kind": c.Kind, "args": c.Args, "options": c.Options})
			_, err := inbox.Parse(raw, tasks.Queues())
			if err == nil {
				t.Errorf("%s: Go accepted %s, which python refused (%s)", c.Name, raw, r.Error)
			} else if !strings.Contains(err.Error(), c.field) {
				t.Errorf("%s: Go refused without naming %q: %v", c.Name, c.field, err)
			}
			continue
		}
		accepted++
		if r.Error != "" {
			t.Errorf("%s: python refused: %s", c.Name, r.Error)
			continue
		}
		if len(r.Entries) != len(c.want) {
			t.Errorf("%s: python made %d entries, want %d", c.Name, len(r.Entries), len(c.want))
			continue
		}
		for j, e := range r.Entries {
			job, err := inbox.Parse([]byte(e), tasks.Queues())
			if err != nil {
				t.Errorf("%s: Go refused python's entry %d: %v\n%s", c.Name, j, err, e)
				continue
			}
			if !reflect.DeepEqual(job.Payload, c.want[j]) {
				t.Errorf("%s: entry %d parsed as %#v, want %#v", c.Name, j, job.Payload, c.want[j])
			}
			if job.Coalesce != c.coalesce {
				t.Errorf("%s: entry %d coalesce=%v, want %v", c.Name, j, job.Coalesce, c.coalesce)
			}
			if want := len(c.Options); len(job.Options) != want {
				t.Errorf("%s: entry %d has %d options, want %d: %s", c.Name, j, len(job.Options), want, e)
			}
			if c.Options["task_id"] != nil && job.TaskID != c.Options["task_id"] {
				t.Errorf("%s: task id %q, want %v", c.Name, job.TaskID, c.Options["task_id"])
			}
			if delayed := c.Options["process_in"] != nil || c.Options["process_at"] != nil; job.Delayed != delayed {
				t.Errorf("%s: delayed=%v, want %v", c.Name, job.Delayed, delayed)
			}
		}
	}
	t.Logf("%d python entries parsed by Go as expected; %d jobs refused by both, naming the same field", accepted, refused)
}

// The Python package knows every built-in kind with the Go defaults.
func TestPythonKindsMatchGo(t *testing.T) {
	t.Parallel()
	out := testenv.RunPython(t, `
import json
from cachekeeper import kinds
print(json.dumps({k.name: [k.queue, k.max_retry, k.timeout] for k in kinds.BUILTIN.values()}))
`, nil)
	var py map[string][3]any
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatal(err)
	}
	for _, k := range tasks.Kinds() {
		got, ok := py[k.Kind]
		if !ok {
			t.Errorf("python has no kind %s", k.Kind)
			continue
		}
		want := [3]any{k.Queue, float64(k.MaxRetry), k.Timeout.Seconds()}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: python has queue, retries, timeout %v, Go %v", k.Kind, got, want)
		}
		delete(py, k.Kind)
	}
	for name := range py {
		t.Errorf("python has kind %s, Go does not", name)
	}
}
