package tasks_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		p       tasks.Payload
		wantErr string // substring; empty means valid
	}{
		{"warm ok", &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}, ""},
		{"warm no cache", &tasks.WarmArgs{IDs: tasks.IDs{"1"}}, `"cache"`},
		{"warm no ids", &tasks.WarmArgs{Cache: "user"}, `"ids": must not be empty`},
		{"warm blank id", &tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{" "}}, `"ids[0]"`},
		{"warm_all ok", &tasks.WarmAllArgs{Cache: "user"}, ""},
		{"warm_all negative rate", &tasks.WarmAllArgs{Cache: "user", MaxKeysPerSecond: -1}, "max_keys_per_second"},
		{"invalidate ids", &tasks.InvalidateArgs{Cache: "user", IDs: tasks.IDs{"1"}}, ""},
		{"invalidate keys", &tasks.InvalidateArgs{Keys: []string{"user:1"}}, ""},
		{"invalidate both", &tasks.InvalidateArgs{Cache: "user", Keys: []string{"k"}}, "cannot be combined"},
		{"invalidate nothing", &tasks.InvalidateArgs{}, `"cache": is required`},
		{"invalidate rewarm keys", &tasks.InvalidateArgs{Keys: []string{"k"}, Rewarm: true}, "rewarm"},
		{"pattern ok", &tasks.InvalidatePatternArgs{Pattern: "user:*"}, ""},
		{"pattern star", &tasks.InvalidatePatternArgs{Pattern: "*"}, "matches every key"},
		{"pattern star allowed", &tasks.InvalidatePatternArgs{Pattern: "*", AllowAll: true}, ""},
		{"pattern empty", &tasks.InvalidatePatternArgs{}, "must not be empty"},
		{"tag ok", &tasks.InvalidateTagArgs{Tag: "org:7"}, ""},
		{"tag empty", &tasks.InvalidateTagArgs{}, `"tag"`},
		{"cleanup defaults", &tasks.SessionCleanupArgs{}, ""},
		{"cleanup negative", &tasks.SessionCleanupArgs{MaxAge: -1}, "max_age"},
		{"revoke ok", &tasks.SessionRevokeArgs{UserID: "7"}, ""},
		{"revoke empty", &tasks.SessionRevokeArgs{}, "user_id"},
		{"prune defaults", &tasks.RateLimitPruneArgs{}, ""},
		{"prune star", &tasks.RateLimitPruneArgs{Pattern: "*"}, "matches every key"},
		{"notify ok", &tasks.NotifyArgs{Channel: "c", Message: "m"}, ""},
		{"notify no channel", &tasks.NotifyArgs{Message: "m"}, `"channel"`},
	}
	for _, c := range cases {
		err := c.p.Validate()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.wantErr != "" && err == nil:
			t.Errorf("%s: accepted, want error containing %s", c.name, c.wantErr)
		case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
			t.Errorf("%s: error %q does not contain %s", c.name, err, c.wantErr)
		case err != nil && !errors.Is(err, tasks.ErrInvalidPayload):
			t.Errorf("%s: error %v does not wrap ErrInvalidPayload", c.name, err)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	p, err := tasks.Decode(tasks.KindInvalidate, []byte(`{"cache":"user","ids":[1,"a2",3]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := p.(*tasks.InvalidateArgs).IDs
	if strings.Join(got, ",") != "1,a2,3" {
		t.Fatalf("ids = %v", got)
	}
	p, err = tasks.Decode(tasks.KindSessionCleanup, []byte(`{"max_age":"2h","idle_timeout":600}`))
	if err != nil {
		t.Fatal(err)
	}
	sc := p.(*tasks.SessionCleanupArgs)
	if sc.MaxAge.D().Hours() != 2 || sc.IdleTimeout.D().Minutes() != 10 {
		t.Fatalf("durations = %v %v", sc.MaxAge.D(), sc.IdleTimeout.D())
	}
	bad := []struct{ kind, data, want string }{
		{"cache:nope", `{}`, "unknown kind"},
		{tasks.KindWarm, `{"cache":"user","idz":[1]}`, `"idz": is not a field`},
		{tasks.KindWarm, `{"cache":"user","ids":[1.5]}`, `"ids[0]"`},
		{tasks.KindWarm, `{"cache":7,"ids":[1]}`, `"cache": must be`},
		{tasks.KindWarm, `{"cache":"user",`, "malformed JSON"},
		{tasks.KindWarm, `{"cache":"user","ids":[]}`, "must not be empty"},
		{tasks.KindSessionCleanup, `{"max_age":"soon"}`, "not a duration"},
	}
	for _, b := range bad {
		_, err := tasks.Decode(b.kind, []byte(b.data))
		if err == nil || !strings.Contains(err.Error(), b.want) || !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("Decode(%s, %s) = %v, want ErrInvalidPayload containing %q", b.kind, b.data, err, b.want)
		}
	}
}

func TestNewTaskDefaultsAndOverrides(t *testing.T) {
	t.Parallel()
	for _, k := range tasks.Kinds() {
		if k.Queue == "" || k.MaxRetry <= 0 || k.Timeout <= 0 || k.New().Kind() != k.Kind {
			t.Errorf("kind %s has incomplete defaults: %+v", k.Kind, k)
		}
	}
	if _, err := tasks.NewTask(&tasks.NotifyArgs{}); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("NewTask accepted an invalid payload: %v", err)
	}
	if _, err := tasks.ID(4.2); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("ID(4.2) = %v", err)
	}
	if s, _ := tasks.ID(int64(42)); s != "42" {
		t.Fatalf("ID(42) = %q", s)
	}
}

func TestMatchesEverything(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{"*": true, "?*": true, "[a-z]*": true, "": true, "user:*": false, "\\*x": false, "u*": false} {
		if got := tasks.MatchesEverything(p); got != want {
			t.Errorf("MatchesEverything(%q) = %v, want %v", p, got, want)
		}
	}
}
