package bench_test

import (
	"context"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestInboxSmall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	producer := redis.NewClient(opt)
	defer producer.Close()
	res, err := bench.Inbox(context.Background(), r.Client, producer, bench.InboxOptions{Entries: 2000, Rounds: 1, LatencyRate: 200, LatencySeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Scenario != bench.ScenarioInbox || res.CachekeeperPerS <= 0 || res.BaselinePerS <= 0 || res.Ratio <= 0 || res.Extra["latency_p99_ms"].(float64) <= 0 {
		t.Fatalf("result = %+v", res)
	}
	if keys := r.Client.Keys(context.Background(), "ckbench:*").Val(); len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
}
