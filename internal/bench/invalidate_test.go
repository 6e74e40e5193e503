package bench_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestInvalidateSmall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	r.Client.Set(ctx, "unrelated", "kept", 0)
	res, err := bench.Invalidate(ctx, r.Client, bench.InvalidateOptions{Keys: 5000, BaselineKeys: 500, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Scenario != bench.ScenarioInvalidatePattern || res[1].Scenario != bench.ScenarioInvalidatePatternFenced {
		t.Fatalf("results = %+v", res)
	}
	for _, x := range res {
		if x.CachekeeperPerS <= 0 || x.BaselinePerS <= 0 || x.Ratio <= 0 || x.Extra["keys"] != 5000 {
			t.Fatalf("result = %+v", x)
		}
	}
	// Only the scenario's keys and fences are written, and they are gone.
	if keys := r.Client.Keys(ctx, "*").Val(); len(keys) != 1 || keys[0] != "unrelated" {
		t.Fatalf("keys left after the run: %v", keys)
	}
}

func TestInvalidateRejectsBadOptions(t *testing.T) {
	t.Parallel()
	r := testenv.NewMiniredis(t)
	for _, o := range []bench.InvalidateOptions{{Keys: -1}, {Prefix: "cachekeeper:x:"}} {
		if _, err := bench.Invalidate(context.Background(), r.Client, o); !errors.Is(err, bench.ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
}
