package cli_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

type hailArgs struct {
	Name string `json:"name"`
}

func (hailArgs) Kind() string { return "test:hail" }
func (a hailArgs) Validate() error {
	if strings.TrimSpace(a.Name) == "" {
		return &tasks.FieldError{Kind: "test:hail", Field: "name", Msg: "must not be empty"}
	}
	return nil
}
func (hailArgs) KindDefaults() tasks.KindDefaults {
	return tasks.KindDefaults{Queue: "hail", MaxRetry: 1, Timeout: 5 * time.Second}
}

// A kind of the application's own, handled by an embedded worker, is
// enqueued by the CLI (`enqueue job`) and through the inbox by name with
// JSON arguments; a kind no worker handles is refused (exit 2, dead
// letter), naming the kinds that are known.
func TestEnqueueJobOfTheApplicationsOwnKind(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}

	res := run(t, ctx, env, "enqueue", "job", "--kind", "test:hail", "--args", `{"name":"ada"}`)
	if res.code != 2 || !strings.Contains(res.stderr, `--kind "test:hail": no running worker handles it (known: cache:invalidate`) {
		t.Fatalf("enqueue job of a kind no worker handles: %+v", res)
	}

	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	hailed := make(chan string, 10)
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, Client: tasks.NewClientFromRedis(r.Client)}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		worker.WithKind(func(ctx context.Context, job *worker.Job[hailArgs]) error {
			hailed <- job.Args.Name
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !w.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("worker not ready in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	res = run(t, ctx, env, "enqueue", "job", "--kind", "test:hail", "--args", `{"name":"ada"}`, "--wait", "--wait-timeout", "10s")
	if res.code != 0 || !strings.Contains(res.stdout, "on queue hail") || !strings.Contains(res.stdout, "completed") {
		t.Fatalf("enqueue job --wait: %+v", res)
	}
	if got := <-hailed; got != "ada" {
		t.Fatalf("handler got %q", got)
	}
	for _, c := range []struct{ args, want string }{
		{`{"nom":"x"}`, `--args: test:hail: field "nom": is not a field of this kind (fields: name)`},
		{`{"name":7}`, `--args: test:hail: field "name": must be JSON string, got integer`},
		{`{}`, `--args: test:hail: field "name": is required (string)`},
		{`[1]`, `must be a JSON object, such as {"name": <string>}`},
	} {
		res = run(t, ctx, env, "enqueue", "job", "--kind", "test:hail", "--args", c.args)
		if res.code != 2 || !strings.Contains(res.stderr, c.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") > 0 {
			t.Fatalf("enqueue job --args %s: %+v; want exit 2 and one line with %q", c.args, res, c.want)
		}
	}
	res = run(t, ctx, env, "enqueue", "job", "--kind", "test:nope", "--args", `{}`)
	if res.code != 2 || !strings.Contains(res.stderr, "session:revoke, test:hail)") {
		t.Fatalf("unknown kind: %+v", res)
	}
	res = run(t, ctx, env, "enqueue", "job", "--kind", "notify:publish", "--args", `{"channel":"c","message":"m"}`, "--in", "1h")
	if res.code != 0 || !strings.Contains(res.stdout, "notify:publish") {
		t.Fatalf("enqueue job of a built-in kind: %+v", res)
	}

	// The inbox: the same kind by name, from any language.
	k := keys.Default()
	r.Client.LPush(ctx, k.Inbox(), `{"kind":"test:hail","args":{"name":"bob"}}`, `{"kind":"test:nope","args":{}}`)
	select {
	case got := <-hailed:
		if got != "bob" {
			t.Fatalf("handler got %q from the inbox", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the inbox entry of test:hail did not run within 10s")
	}
	deadline = time.Now().Add(10 * time.Second)
	var dead []string
	for len(dead) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter for the unknown kind in 10s")
		}
		time.Sleep(20 * time.Millisecond)
		dead = r.Client.LRange(ctx, keys.DeadLetter(k.Inbox()), 0, -1).Val()
	}
	if !strings.Contains(dead[0], `unknown kind \"test:nope\"`) || !strings.Contains(dead[0], "test:hail") {
		t.Fatalf("dead letter %q; want the unknown kind and the known ones", dead[0])
	}
	t.Logf("dead letter: %s", dead[0])
}
