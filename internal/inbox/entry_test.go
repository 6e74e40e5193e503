package inbox_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

func TestParseValidEntries(t *testing.T) {
	t.Parallel()
	queues := tasks.Queues()
	job, err := inbox.Parse([]byte(`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1, "a2"]}}`), queues)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := job.Payload.(*tasks.InvalidateArgs)
	if !ok || a.Cache != "user" || len(a.IDs) != 2 || a.IDs[0] != "1" || a.IDs[1] != "a2" || len(job.Options) != 0 {
		t.Fatalf("job = %#v", job)
	}
	job, err = inbox.Parse([]byte(`{"kind":"cache:warm","args":{"cache":"user","ids":[7]},
		"options":{"queue":"low","task_id":"warm-7","process_in":"30s","max_retry":2,"timeout":60,"retention":"1h"}}`), queues)
	if err != nil {
		t.Fatal(err)
	}
	if job.TaskID != "warm-7" || len(job.Options) != 6 { // process_in: not coalesced
		t.Fatalf("job = %#v", job)
	}
	// The options reach asynq as given.
	task, err := tasks.NewTask(job.Payload, job.Options...)
	if err != nil {
		t.Fatal(err)
	}
	if task.Type() != tasks.KindWarm {
		t.Fatalf("task type %q", task.Type())
	}
	var sawQueue, sawID bool
	for _, o := range job.Options {
		switch o.Type() {
		case asynq.QueueOpt:
			sawQueue = o.Value() == "low"
		case asynq.TaskIDOpt:
			sawID = o.Value() == "warm-7"
		}
	}
	if !sawQueue || !sawID {
		t.Fatalf("options %v lack queue low or task id warm-7", job.Options)
	}
}

func TestParseRejectsWithReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ entry, want string }{
		{`not json`, "not valid JSON"},
		{``, "empty entry"},
		{`[1, 2]`, "must be a JSON object"},
		{`{"args": {"cache": "user", "ids": [1]}}`, `"kind" is required`},
		{`{"kind": "cache:nuke", "args": {}}`, `unknown kind "cache:nuke" (known: cache:invalidate`},
		{`{"kind": "cache:invalidate"}`, `"args" is required`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "idz": [1]}}`, `"idz": is not a field of this kind`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1.5]}}`, `ids[0]`},
		{`{"kind": "cache:invalidate_pattern", "args": {"pattern": "*"}}`, "allow_all"},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "priority": 1}`, `unknown field "priority"`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"queue": "urgent"}}`, `options.queue "urgent" is not served by the workers (queues: critical, default, low)`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"process_in": "soon"}}`, `options.process_in is not a duration: "soon"`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"timeout": "5m", "retention": "forever"}}`, `options.retention is not a duration: "forever"`},
		{`{"kind": "session:cleanup", "args": {"max_age": "old"}}`, `session:cleanup: field "max_age": is not a duration`},
		{`{"kind": "cache:invalidate", "args": {"keys": ["asynq:{default}:scheduled"]}}`, `"keys[0]": internal key: "asynq:{default}:scheduled" belongs to the asynq queue`},
		{`{"kind": "ratelimit:prune", "args": {"pattern": "asynq:*"}}`, `only matches keys of the asynq queue`},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"process_in": "1s", "process_at": "2030-01-01T00:00:00Z"}}`, "cannot both be set"},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"max_retry": -1}}`, "options.max_retry must be 0 or more"},
		{`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}} {}`, "trailing data"},
	} {
		_, err := inbox.Parse([]byte(tc.entry), tasks.Queues())
		if err == nil || !errors.Is(err, tasks.ErrInvalidPayload) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want an invalid-payload error containing %q", tc.entry, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%s): error spans several lines: %q", tc.entry, err)
		}
	}
}

func TestParseCoalescesWarmsWithoutOptions(t *testing.T) {
	t.Parallel()
	many := make([]string, tasks.MaxWarmCacheIDs+1)
	for i := range many {
		many[i] = fmt.Sprint(i + 1)
	}
	for entry, want := range map[string]bool{
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [7]}}`:                                    true,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [7, 8]}}`:                                 true,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [7]}, "options": {}}`:                     true,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [7]}, "options": {"task_id": "w7"}}`:      false,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [7]}, "options": {"process_in": "1m"}}`:   false,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": ["` + strings.Join(many, `","`) + `"]}}`:  false,
		`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [7]}}`:                              true,
		`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [7], "rewarm": true}}`:              false,
		`{"kind": "cache:invalidate", "args": {"keys": ["user:7"]}}`:                                       false,
		`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [7]}, "options": {"max_retry": 1}}`: false,
	} {
		job, err := inbox.Parse([]byte(entry), nil)
		if err != nil {
			t.Fatal(err)
		}
		if job.Coalesce != want {
			t.Errorf("%.90s: coalesce %v, want %v", entry, job.Coalesce, want)
		}
	}
}
