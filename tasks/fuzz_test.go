package tasks_test

import (
	"errors"
	"testing"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// FuzzDecode: no payload of any kind panics; every rejection is an error
// wrapping ErrInvalidPayload with a message; an accepted payload validates
// and names no internal key.
func FuzzDecode(f *testing.F) {
	for _, seed := range []struct{ kind, data string }{
		{tasks.KindWarm, `{"cache": "user", "ids": [1, "a"]}`},
		{tasks.KindWarmAll, `{"cache": "user", "max_keys_per_second": 10, "restart": true}`},
		{tasks.KindInvalidate, `{"keys": ["user:1", "asynq:queues"]}`},
		{tasks.KindInvalidate, `{"cache": "user", "ids": [1.5]}`},
		{tasks.KindInvalidatePattern, `{"pattern": "asynq\\:*", "allow_all": true}`},
		{tasks.KindInvalidateTag, `{"tag": "org:7"}`},
		{tasks.KindSessionCleanup, `{"pattern": "{cachekeeper:*", "max_age": "soon"}`},
		{tasks.KindSessionRevoke, `{"user_id": "42", "scan": true}`},
		{tasks.KindRateLimitPrune, `{"pattern": "rate_limit:*", "window": 60}`},
		{tasks.KindNotifyPublish, `{"channel": "c", "message": "m"}`},
		{"cache:nuke", `{}`},
		{tasks.KindWarm, `{"cache": "user", "ids": [1]} {}`},
	} {
		f.Add(seed.kind, []byte(seed.data))
	}
	g, err := tasks.NewGuard("cachekeeper:")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		p, err := tasks.Decode(kind, data)
		if err != nil {
			if !errors.Is(err, tasks.ErrInvalidPayload) || err.Error() == "" {
				t.Fatalf("Decode(%q, %q): error %v does not wrap ErrInvalidPayload", kind, data, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("decoded payload does not validate: %v", err)
		}
		if err := g.Check(p); err != nil {
			t.Fatalf("decoded payload refused by the default guard: %v", err)
		}
	})
}
