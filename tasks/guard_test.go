package tasks_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestValidateRefusesInternalKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		p       tasks.Payload
		wantErr string
	}{
		{"invalidate asynq key", &tasks.InvalidateArgs{Keys: []string{"user:1", "asynq:{default}:scheduled"}}, `"keys[1]": internal key: "asynq:{default}:scheduled" belongs to the asynq queue`},
		{"invalidate queue registry", &tasks.InvalidateArgs{Keys: []string{"asynq:queues"}}, "asynq queue"},
		{"invalidate own key", &tasks.InvalidateArgs{Keys: []string{"{cachekeeper:inbox}:dead"}}, "cachekeeper itself"},
		{"pattern asynq", &tasks.InvalidatePatternArgs{Pattern: "asynq:*"}, "only matches keys of the asynq queue"},
		{"pattern asynq with allow_all", &tasks.InvalidatePatternArgs{Pattern: "asynq:*", AllowAll: true}, "asynq"},
		{"pattern own", &tasks.InvalidatePatternArgs{Pattern: "cachekeeper:fence:*"}, "cachekeeper itself"},
		{"pattern broad", &tasks.InvalidatePatternArgs{Pattern: "a*"}, ""},
		{"prune asynq", &tasks.RateLimitPruneArgs{Pattern: "asynq:*"}, `ratelimit:prune: field "pattern"`},
		{"prune ok", &tasks.RateLimitPruneArgs{Pattern: "rate_limit:*"}, ""},
		{"cleanup asynq", &tasks.SessionCleanupArgs{Pattern: "asynq:{low}:*"}, `session:cleanup: field "pattern"`},
		{"cleanup own", &tasks.SessionCleanupArgs{Pattern: "{cachekeeper:*"}, "cachekeeper itself"},
		{"cleanup ok", &tasks.SessionCleanupArgs{Pattern: "session:*"}, ""},
	}
	for _, c := range cases {
		err := c.p.Validate()
		if c.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
}

func TestGuardUsesConfiguredPrefixAndOwnedKeys(t *testing.T) {
	t.Parallel()
	g, err := tasks.NewGuard("ck:", "jobs:inbox")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []tasks.Payload{
		&tasks.InvalidateArgs{Keys: []string{"ck:fence:{user:1}"}},
		&tasks.InvalidateArgs{Keys: []string{"{jobs:inbox}:dead"}},
		&tasks.InvalidateArgs{Keys: []string{"jobs:inbox"}},
		&tasks.InvalidatePatternArgs{Pattern: "ck:*"},
		&tasks.RateLimitPruneArgs{Pattern: "{ck:*"},
		&tasks.InvalidateArgs{Keys: []string{"asynq:queues"}},
	} {
		if err := g.Check(p); err == nil || !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("Check(%+v) = %v, want a refusal", p, err)
		}
		if p.Kind() == tasks.KindInvalidate && strings.HasPrefix(p.(*tasks.InvalidateArgs).Keys[0], "asynq:") {
			continue
		}
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) refused a key only the configured guard knows: %v", p, err)
		}
	}
	if err := g.Check(&tasks.InvalidateArgs{Keys: []string{"user:1"}}); err != nil {
		t.Errorf("Check refused an application key: %v", err)
	}
	if _, err := tasks.NewGuard("bad{prefix"); err == nil {
		t.Error("NewGuard accepted a prefix with a brace")
	}
	var zero tasks.Guard
	if err := zero.Check(&tasks.InvalidateArgs{Keys: []string{"cachekeeper:x"}}); err == nil {
		t.Error("the zero Guard does not apply the default rule")
	}
}

func TestClientChecksNames(t *testing.T) {
	t.Parallel()
	c, err := tasks.NewOfflineClient(tasks.WithKeyPrefix("ck:"), tasks.WithQueues("critical", "default", "low"), tasks.WithCaches("user", "org"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	warm := &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}
	if err := c.Check(warm); err != nil {
		t.Fatalf("Check of a good job: %v", err)
	}
	if err := c.Check(warm, tasks.Queue("nosuchqueue")); err == nil || !errors.Is(err, tasks.ErrUnknownName) || !errors.Is(err, tasks.ErrInvalidPayload) ||
		err.Error() != `queue "nosuchqueue" is not served by the workers (queues: critical, default, low)` {
		t.Errorf("unknown queue: %v", err)
	}
	var ne *tasks.NameError
	if err := c.Check(&tasks.InvalidateArgs{Cache: "usr", IDs: tasks.IDs{"1"}}); !errors.As(err, &ne) || ne.What != "cache" ||
		err.Error() != `cache "usr" is not configured (caches: org, user)` {
		t.Errorf("unknown cache: %v", err)
	}
	if err := c.Check(&tasks.InvalidateArgs{Keys: []string{"ck:tag:x"}}); err == nil {
		t.Error("Check accepted a key under the client's prefix")
	}
	if _, err := c.Enqueue(t.Context(), warm); !errors.Is(err, tasks.ErrOffline) {
		t.Errorf("offline Enqueue = %v", err)
	}
	if err := c.WarmCache(t.Context(), "usr", 1); !errors.Is(err, tasks.ErrUnknownName) {
		t.Errorf("WarmCache of an unknown cache = %v", err)
	}
	if _, err := c.Enqueue(t.Context(), warm, tasks.ProcessIn(time.Second), tasks.Queue("low")); !errors.Is(err, tasks.ErrOffline) {
		t.Errorf("a served queue was refused: %v", err)
	}
}

func TestBadDurationNamesTheField(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"max_age": "soon"}`:                     `session:cleanup: field "max_age": is not a duration: "soon"`,
		`{"max_age": "1h", "idle_timeout": true}`: `session:cleanup: field "idle_timeout": must be a duration`,
	} {
		_, err := tasks.Decode(tasks.KindSessionCleanup, []byte(in))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want %q", in, err, want)
		}
	}
	if _, err := tasks.Decode(tasks.KindRateLimitPrune, []byte(`{"window": "1 minute"}`)); err == nil || !strings.Contains(err.Error(), `field "window"`) {
		t.Errorf("window: %v", err)
	}
}
