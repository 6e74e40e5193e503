package bench_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestMaintenanceSmall(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	r.Client.Set(ctx, "unrelated", "kept", 0)
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	app := redis.NewClient(opt)
	defer app.Close()
	res, err := bench.Maintenance(ctx, r.Client, app, bench.MaintenanceOptions{Keys: 3000, AppRate: 500, Baseline: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2*len(bench.MaintenanceKinds)+1 {
		t.Fatalf("%d results, want unpaced and paced of %d kinds, and the pattern run whose loop stops", len(res), len(bench.MaintenanceKinds))
	}
	for _, x := range res {
		t.Logf("%s: ratio %.2f, %.0f keys/s, extra %v", x.Scenario, x.Ratio, x.CachekeeperPerS, x.Extra)
		if x.Scenario == "maintenance_invalidate_pattern_app_stops" {
			if x.BaselinePerS <= 0 || x.CachekeeperPerS <= 0 {
				t.Fatalf("result = %+v, want keys/s before and after the loop stopped", x)
			}
			continue
		}
		if x.CachekeeperPerS <= 0 || x.Extra["keys"] != 3000 || x.Extra["baseline_p99_ms"].(float64) <= 0 || x.Extra["idle_keys_per_s"].(float64) <= 0 {
			t.Fatalf("result = %+v", x)
		}
		if x.Extra["paced"] == true {
			if _, ok := x.Extra["idle_of_unpaced"].(float64); !ok {
				t.Fatalf("paced result lacks idle_of_unpaced: %+v", x)
			}
		}
	}
	if res[2].Scenario != "maintenance_invalidate_pattern_app_stops" {
		t.Fatalf("third result %q, want the pattern run whose loop stops", res[2].Scenario)
	}
	if keys := r.Client.Keys(ctx, "*").Val(); len(keys) != 1 || keys[0] != "unrelated" {
		t.Fatalf("keys left after the run: %v", keys)
	}
}

// TestMaintenanceAppProcess: the application loop runs as a process of its
// own (this test binary, see TestMain), its latencies come back through its
// output, and it is paused for the idle runs.
func TestMaintenanceAppProcess(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("the process needs a Redis URL it can reach")
	}
	ctx := context.Background()
	res, err := bench.Maintenance(ctx, r.Client, nil, bench.MaintenanceOptions{Keys: 3000, AppRate: 500, Baseline: 300 * time.Millisecond,
		Kinds: []string{bench.MaintRateLimits}, AppCommand: []string{os.Args[0], "-test.run=^$", appLoadArg, r.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results, want unpaced and paced", len(res))
	}
	for _, x := range res {
		t.Logf("%s: ratio %.2f, %.0f keys/s, extra %v", x.Scenario, x.Ratio, x.CachekeeperPerS, x.Extra)
		if x.Extra["app_process"] != true || x.Extra["baseline_p99_ms"].(float64) <= 0 || x.Extra["during_p99_ms"].(float64) <= 0 || x.Extra["idle_keys_per_s"].(float64) <= 0 {
			t.Fatalf("result = %+v, want the process's latencies and the idle rate", x)
		}
	}
}

func TestMaintenanceRejectsBadOptions(t *testing.T) {
	t.Parallel()
	r := testenv.NewMiniredis(t)
	for _, o := range []bench.MaintenanceOptions{{Keys: -1}, {Kinds: []string{"nope"}}} {
		if _, err := bench.Maintenance(context.Background(), r.Client, r.Client, o); !errors.Is(err, bench.ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
}
