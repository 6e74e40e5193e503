package inbox_test

import (
	"errors"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// FuzzParse: no inbox entry panics the parser; every rejection wraps
// ErrInvalidPayload with a one-line reason (what the dead letter records).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"kind": "cache:invalidate", "args": {"keys": ["asynq:queues"]}}`,
		`{"kind": "cache:warm", "args": {"cache": "user", "ids": [1]}}`,
		`{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]}, "options": {"queue": "urgent", "process_in": "soon"}}`,
		`{"kind": "ratelimit:prune", "args": {"pattern": "asynq:*"}}`,
		`not json`, `[]`, `{"kind": 1}`, `{"kind": "cache:warm", "args": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		job, err := inbox.Parse(raw, tasks.Queues())
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatalf("Parse(%q): %v does not wrap ErrInvalidPayload", raw, err)
			}
			return
		}
		if err := job.Payload.Validate(); err != nil {
			t.Fatalf("parsed entry does not validate: %v", err)
		}
	})
}
