package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
)

const scheduleConfig = `
caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email FROM users WHERE id IN (?)"
    all: "SELECT id, email FROM users WHERE id > ? ORDER BY id LIMIT ?"
schedule:
  - name: session-cleanup
    schedule: "@every 5m"
    kind: session:cleanup
  - name: rate-limit-prune
    schedule: "@every 1m"
    kind: ratelimit:prune
  - name: warm-users-nightly
    schedule: "0 3 * * *"
    time_zone: Europe/Paris
    kind: cache:warm_all
    args: {cache: user}
    catch_up: one
`

// lockedBuffer is safe for a running command writing while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func runSchedCLI(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb lockedBuffer
	code = cli.Run(ctx, args, cli.IO{Stdout: &out, Stderr: &errb, Env: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestScheduleList(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeConfig(t, path, scheduleConfig)
	ctx := context.Background()

	code, out, errOut := runSchedCLI(ctx, nil, "schedule", "list", "-c", path)
	if code != 0 {
		t.Fatalf("schedule list: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("table has %d lines, want a header and 3 entries:\n%s", len(lines), out)
	}
	for i, name := range []string{"session-cleanup", "rate-limit-prune", "warm-users-nightly"} {
		if !strings.HasPrefix(lines[i+1], name) || strings.Count(lines[i+1], ", ") != 2 {
			t.Errorf("line %q: want %s with three run times", lines[i+1], name)
		}
	}

	code, out, errOut = runSchedCLI(ctx, nil, "schedule", "list", "-c", path, "-o", "json", "--next", "4")
	if code != 0 {
		t.Fatalf("schedule list -o json: exit %d, stderr %q", code, errOut)
	}
	var got []struct {
		Name, Schedule, Kind, Queue, Series string
		TimeZone                            string `json:"time_zone"`
		CatchUp                             string `json:"catch_up"`
		Next                                []time.Time
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Name, Schedule, Kind, Queue, Series string
			TimeZone                            string `json:"time_zone"`
			CatchUp                             string `json:"catch_up"`
			Next                                []time.Time
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("json line: %v\n%s", err, line)
		}
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	for _, e := range got {
		if len(e.Next) != 4 {
			t.Fatalf("%s: %d next times, want 4", e.Name, len(e.Next))
		}
		for i := 1; i < len(e.Next); i++ {
			if !e.Next[i].After(e.Next[i-1]) {
				t.Fatalf("%s: next times not increasing: %v", e.Name, e.Next)
			}
		}
	}
	if e := got[0]; e.Queue != "low" || e.CatchUp != "none" || e.Next[0].Unix()%300 != 0 || e.Next[1].Sub(e.Next[0]) != 5*time.Minute {
		t.Errorf("session-cleanup: %+v, want queue low, catch_up none, ticks on multiples of 5 minutes", e)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	if e := got[2]; e.TimeZone != "Europe/Paris" || e.CatchUp != "one" || e.Next[0].In(paris).Hour() != 3 || e.Next[0].In(paris).Minute() != 0 {
		t.Errorf("warm-users-nightly: %+v, want 03:00 Paris time", e)
	}

	// A broken schedule is a validation error: exit 2, one line naming the field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeConfig(t, bad, "schedule:\n  - name: x\n    schedule: \"@every 1.5s\"\n    kind: session:cleanup\n")
	code, _, errOut = runSchedCLI(ctx, nil, "schedule", "list", "-c", bad)
	if code != cli.ExitUsage || !strings.Contains(errOut, "schedule.x.schedule") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("broken schedule: exit %d, stderr %q; want 2 and one line naming schedule.x.schedule", code, errOut)
	}
}

func TestScheduleRun(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeConfig(t, path, scheduleConfig)
	ctx := context.Background()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "run", "-c", path, "nope"}, `unknown schedule entry "nope" (entries: session-cleanup, rate-limit-prune, warm-users-nightly)`},
		{[]string{"schedule", "run", "-c", path}, "name the entry to run"},
		{[]string{"schedule", "bogus"}, `unknown subcommand "bogus"`},
	} {
		code, _, errOut := runSchedCLI(ctx, env, c.args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line containing %q", c.args, code, errOut, c.want)
		}
	}
	if n := r.Client.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("refused commands left %d keys in Redis", n)
	}

	code, out, errOut := runSchedCLI(ctx, env, "schedule", "run", "-c", path, "-o", "json", "rate-limit-prune")
	if code != 0 {
		t.Fatalf("schedule run: exit %d, stderr %q", code, errOut)
	}
	var info struct{ ID, Queue, Type, State string }
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if !strings.HasPrefix(info.ID, "schedule:rate-limit-prune:") || !strings.Contains(info.ID, ":now:") || info.Queue != "low" {
		t.Fatalf("enqueued %+v, want a schedule:rate-limit-prune:...:now:... task on low", info)
	}
	got, err := asynq.NewInspectorFromRedisClient(r.Client).GetTaskInfo("low", info.ID)
	if err != nil || got.Type != "ratelimit:prune" || got.State != asynq.TaskStatePending {
		t.Fatalf("task in Redis: %+v, %v", got, err)
	}
}

// The scheduler command enqueues ticks, refuses a broken file on SIGHUP with
// one error line while the old schedule keeps running, and applies a good
// file on the next SIGHUP.
func TestSchedulerCommandReloadsOnSIGHUP(t *testing.T) {
	// Not parallel: it sends SIGHUP to the test process.
	r := testenv.NewRedis(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	entry := func(name string) string {
		return "  - name: " + name + "\n    schedule: \"@every 1s\"\n    kind: notify:publish\n    args: {channel: ticks, message: " + name + "}\n"
	}
	writeConfig(t, path, "schedule:\n"+entry("tick-a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"scheduler", "-c", path, "--redis-url", r.URL, "--log-level", "info"},
			cli.IO{Stdout: &out, Stderr: &errb, Env: func(string) string { return "" }})
	}()
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	ticks := func(name string) []int64 {
		infos, _ := insp.ListPendingTasks("default", asynq.PageSize(1000))
		var ts []int64
		for _, in := range infos {
			if parts := strings.Split(in.ID, ":"); len(parts) == 4 && parts[1] == name {
				n, _ := strconv.ParseInt(parts[3], 10, 64)
				ts = append(ts, n)
			}
		}
		return ts
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; stderr:\n%s", what, errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the scheduler to start", func() bool { return strings.Contains(errb.String(), "scheduler started") })
	waitFor("a tick of tick-a", func() bool { return len(ticks("tick-a")) >= 1 })

	writeConfig(t, path, "schedule:\n"+entry("tick-b")+"  - name: broken\n    schedule: \"@every 1s\"\n    kind: notify:publsh\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the refusal", func() bool { return strings.Contains(errb.String(), "new configuration refused") })
	var refusals []string
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.Contains(l, "refused") {
			refusals = append(refusals, l)
		}
	}
	if len(refusals) != 1 || !strings.Contains(refusals[0], "schedule.broken.kind") || !strings.Contains(refusals[0], "level=ERROR") {
		t.Fatalf("refusal lines %q, want one ERROR line naming schedule.broken.kind", refusals)
	}
	before := len(ticks("tick-a"))
	waitFor("tick-a to keep running after the refused reload", func() bool { return len(ticks("tick-a")) > before })

	writeConfig(t, path, "schedule:\n"+entry("tick-b"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload", func() bool { return strings.Contains(errb.String(), "schedule reloaded from the configuration") })
	reloaded := time.Now().Unix()
	waitFor("two ticks of tick-b", func() bool { return len(ticks("tick-b")) >= 2 })
	for _, ts := range ticks("tick-a") {
		if ts > reloaded+1 {
			t.Fatalf("tick-a ran at %d, after the reload at %d removed it", ts, reloaded)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("scheduler exit %d; stderr:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("scheduler did not stop within 10s")
	}
}
