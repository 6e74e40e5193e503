package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
)

func TestKeyTemplatesMustNotRenderInternalKeys(t *testing.T) {
	t.Parallel()
	cache := func(key string) string {
		return "caches:\n  user:\n    key: \"" + key + "\"\n    ttl: 1h\n    by_ids: SELECT id FROM users WHERE id IN (?)\n"
	}
	cases := map[string]string{
		cache("cachekeeper:user:{id}"):                          `caches.user.key: internal key: key template "cachekeeper:user:{id}"`,
		cache("asynq:{id}"):                                     "belong to the asynq queue",
		cache("{id}"):                                           `caches.user.key`,
		"key_prefix: \"ck:\"\n" + cache("ck:u:{id}"):            "caches.user.key",
		"inbox:\n  key: jobs:inbox\n" + cache("jobs:{id}"):      `can render "jobs:inbox"`,
		"sessions:\n  key: \"asynq:{token}\"\n":                 "sessions.key",
		"sessions:\n  index: \"cachekeeper:{user_id}\"\n":       "sessions.index",
		"rate_limits:\n  key: \"{{cachekeeper:x}}:{client}\"\n": "rate_limits.key",
		"schedule:\n  - name: nuke\n    schedule: \"@every 1m\"\n    kind: ratelimit:prune\n    args: {pattern: \"asynq:*\"}\n": "schedule.nuke.args",
	}
	for body, want := range cases {
		_, err := config.Load(write(t, body), nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: err = %v, want ErrInvalid mentioning %q", body, err, want)
		}
	}
	if _, err := config.Load(write(t, cache("user:{id}")), nil); err != nil {
		t.Fatalf("an application template was refused: %v", err)
	}
}

func TestClientOptionsCheckNamesAndKeys(t *testing.T) {
	t.Parallel()
	c, err := config.Load(write(t, "key_prefix: \"ck:\"\ninbox:\n  key: jobs:inbox\ncaches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id FROM users WHERE id IN (?)\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := tasks.NewOfflineClient(c.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Check(&tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		p    tasks.Payload
		opts []tasks.Option
	}{
		{&tasks.WarmArgs{Cache: "usr", IDs: tasks.IDs{"1"}}, nil},
		{&tasks.WarmArgs{Cache: "user", IDs: tasks.IDs{"1"}}, []tasks.Option{tasks.Queue("nosuchqueue")}},
		{&tasks.InvalidateArgs{Keys: []string{"ck:fence:{user:1}"}}, nil},
		{&tasks.InvalidateArgs{Keys: []string{"{jobs:inbox}:dead"}}, nil},
	} {
		if err := client.Check(bad.p, bad.opts...); !errors.Is(err, tasks.ErrInvalidPayload) {
			t.Errorf("Check(%+v) = %v, want a refusal", bad.p, err)
		}
	}
}
