package redisacl_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/redisacl"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestCheckNamesWhatAUserLacksAndTheRuleToAdd(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	u, err := url.Parse(r.URL)
	if err != nil || u.Scheme != "unix" {
		t.Skipf("needs a private redis-server on a unix socket (%s)", r.URL)
	}
	cfg := config.Default()
	cfg.Caches = map[string]config.CacheSpec{"user": {Key: "user:{id}"}}
	needs := redisacl.Needs(cfg)
	cases := []struct {
		name, rule string
		method     string
		want       []string // rule pieces expected in the error; none: no error
	}{
		{"full", "on >pw ~* &* +@all", "ACL DRYRUN", nil},
		{"noeval", "on >pw ~* &* +@all -eval -evalsha", "ACL DRYRUN", []string{"+eval", "+evalsha"}},
		{"nochannels", "on >pw ~* resetchannels +@all -@dangerous", "MULTI", []string{"&asynq:cancel", "&cachekeeper:events"}},
		{"appkeys", "on >pw ~user:* &* +@all -@dangerous", "MULTI", []string{"~asynq:*", "~cachekeeper:*"}},
	}
	for _, tc := range cases {
		if err := r.Client.Do(ctx, append([]any{"ACL", "SETUSER", tc.name}, toAny(strings.Fields(tc.rule))...)...).Err(); err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(&redis.Options{Network: "unix", Addr: u.Path, Username: tc.name, Password: "pw"})
		rep, err := redisacl.Check(ctx, c, needs)
		_ = c.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rep.Method != tc.method || rep.Checked != len(needs) {
			t.Errorf("%s: checked %d of %d by %s, want all by %s", tc.name, rep.Checked, len(needs), rep.Method, tc.method)
		}
		got := rep.Err()
		t.Logf("%s (%s): %v", tc.name, rep.Method, got)
		if len(tc.want) == 0 {
			if got != nil {
				t.Errorf("%s: %v, want nothing missing", tc.name, got)
			}
			continue
		}
		if got == nil {
			t.Errorf("%s: nothing reported missing, want %v", tc.name, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got.Error(), "ACL SETUSER "+tc.name) || !strings.Contains(got.Error(), w) {
				t.Errorf("%s: %q does not name %s with the ACL rule", tc.name, got, w)
			}
		}
		// Granting the rule it names is enough.
		rule := got.Error()[strings.Index(got.Error(), "ACL SETUSER "+tc.name)+len("ACL SETUSER "+tc.name):]
		if err := r.Client.Do(ctx, append([]any{"ACL", "SETUSER", tc.name}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
			t.Fatalf("%s: the rule %q does not apply: %v", tc.name, rule, err)
		}
		c = redis.NewClient(&redis.Options{Network: "unix", Addr: u.Path, Username: tc.name, Password: "pw"})
		rep, err = redisacl.Check(ctx, c, needs)
		_ = c.Close()
		if err != nil || rep.Err() != nil {
			t.Errorf("%s after granting %q: %v, %v", tc.name, rule, err, rep.Err())
		}
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
