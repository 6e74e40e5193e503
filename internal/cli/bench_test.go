package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// Without --redis-url the command starts its own redis-server.
func TestBenchQueueJSONOnPrivateRedis(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "bench", "queue", "--tasks", "500", "--rounds", "1", "--pickup=false", "-o", "json", "--log-level", "warn")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout %q, want one JSON line", res.stdout)
	}
	var r bench.Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Scenario != "queue" || r.CachekeeperPerS <= 0 || r.BaselinePerS <= 0 || r.Ratio <= 0 {
		t.Fatalf("result %+v", r)
	}
	if r.Extra["processed"] != float64(500) || r.Extra["baseline_processed"] != float64(500) {
		t.Fatalf("processed: %v", r.Extra)
	}
}

func TestBenchQueueTable(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	res := run(t, context.Background(), nil, "bench", "queue", "--tasks", "300", "--rounds", "1", "--pickup=false", "--servers", "2", "--redis-url", rd.URL)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{"SCENARIO", "CACHEKEEPER", "BASELINE IS", "RATIO", "\nqueue ", "asynq v0.26, 1 server, no middleware", "queue: ", "servers=2", "processed=300"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestBenchQueueUsageErrors(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tasks", "0"}, "--tasks must be at least 1"},
		{[]string{"--servers", "0"}, "--servers must be at least 1"},
		{[]string{"--concurrency", "2", "--servers", "4"}, "worker.servers (4) must not exceed worker.concurrency (2)"},
		{[]string{"-o", "xml"}, `--output "xml" must be table or json`},
		{[]string{"--redis-url", "http://x"}, "--redis-url"},
	} {
		args := append([]string{"bench", "queue", "--redis-url", rd.URL}, tc.args...)
		res := run(t, context.Background(), nil, args...)
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
}

func TestBenchQueueOnUnixSocket(t *testing.T) {
	t.Parallel()
	res := run(t, context.Background(), nil, "bench", "queue", "--tasks", "200", "--rounds", "1", "--pickup=false", "--unix-socket", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "unix://") {
		t.Errorf("stderr does not name the unix socket: %s", res.stderr)
	}
	var r bench.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.stdout)), &r); err != nil || r.Extra["processed"] != float64(200) {
		t.Fatalf("result %q (%v)", res.stdout, err)
	}
}
