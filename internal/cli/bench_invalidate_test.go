package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestBenchInvalidateJSON(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	var out, errb lockedBuf
	code := cli.Run(context.Background(), []string{"bench", "invalidate", "--keys", "3000", "--baseline-keys", "300", "--rounds", "1", "-o", "json", "--redis-url", r.URL},
		cli.IO{Stdout: &out, Stderr: &errb})
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want two JSON lines", out.String())
	}
	for i, want := range []string{bench.ScenarioInvalidatePattern, bench.ScenarioInvalidatePatternFenced} {
		var res bench.Result
		if err := json.Unmarshal([]byte(lines[i]), &res); err != nil || res.Scenario != want || res.CachekeeperPerS <= 0 || res.BaselinePerS <= 0 {
			t.Errorf("line %d = %q (%v), want scenario %s with rates", i, lines[i], err, want)
		}
	}
	code = cli.Run(context.Background(), []string{"bench", "invalidate", "--keys", "0", "--redis-url", r.URL}, cli.IO{Stdout: &out, Stderr: &errb})
	if code != cli.ExitUsage || !strings.Contains(errb.String(), "--keys must be at least 1") {
		t.Fatalf("--keys 0: exit %d, stderr %q", code, errb.String())
	}
}
