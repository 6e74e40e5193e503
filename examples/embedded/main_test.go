package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis starts a private redis-server on a unix socket in a temporary
// directory and stops it when the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH (apt-get install redis-server)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "unix://" + sock
}

// syncBuffer is a log sink safe for the goroutines of run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The application loads its file, runs the worker and the scheduler, and
// both its own job and the scheduled one are done by the embedded worker;
// cancelling the context stops everything, and run returns nil.
func TestEmbeddedWorkerAndScheduler(t *testing.T) {
	url := startRedis(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "cachekeeper.yaml")
	yaml := `key_prefix: "app1:"
worker:
  metrics_addr: ""
sessions:
  key: "app:session:{token}"
  index: "app:user:{user_id}:sessions"
schedule:
  - name: ping
    schedule: "@every 1s"
    kind: notify:publish
    args: {channel: "app:scheduled", message: "tick"}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(url, "unix://")})
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := sub.Subscribe(ctx, "app:hello", "app:scheduled", GreetingsChannel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-config", file, "-redis-url", url}, func(string) string { return "" }, logs)
	}()

	got := map[string]bool{}
	timeout := time.After(20 * time.Second)
	want := []string{"app:hello hello from the application", "app:scheduled tick", GreetingsChannel + " hello ada", GreetingsChannel + " hello bob"}
	pushed := false
	for !hasAll(got, want) {
		select {
		case m := <-ps.Channel():
			got[m.Channel+" "+m.Payload] = true
			if !pushed && m.Channel == GreetingsChannel {
				// A producer without the Go type (any language) sends the
				// same kind through the inbox once a worker handles it;
				// one with an unknown field is dead-lettered.
				pushed = true
				sub.LPush(ctx, "cachekeeper:inbox", `{"kind":"example:greet","args":{"nom":"x"}}`, `{"kind":"example:greet","args":{"name":"bob"}}`)
			}
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, logs)
		case <-timeout:
			t.Fatalf("messages after 20s: %v, want %q\n%s", got, want, logs)
		}
	}
	var dead []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if dead = sub.LRange(ctx, "{cachekeeper:inbox}:dead", 0, -1).Val(); len(dead) > 0 {
			break
		}
	}
	if len(dead) != 1 || !strings.Contains(dead[0], `is not a field of this kind (fields: name)`) {
		t.Fatalf("dead letters %q; want the entry with an unknown field", dead)
	}
	// The session went where the file says the worker's cleanup looks.
	if n := len(sub.Keys(context.Background(), "app:session:*").Val()); n != 1 {
		t.Fatalf("%d sessions under app:session:*, want 1", n)
	}
	if n := sub.SCard(context.Background(), "app:user:alice:sessions").Val(); n != 1 {
		t.Fatalf("alice's index holds %d tokens, want 1", n)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v\n%s", err, logs)
		}
		t.Logf("stopped %v after cancel", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not return within 20s of cancel\n%s", logs)
	}
}

func hasAll(got map[string]bool, want []string) bool {
	for _, w := range want {
		if !got[w] {
			return false
		}
	}
	return true
}

// A configuration error is one line wrapping config.ErrInvalid.
func TestBadConfigIsOneLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("redsi:\n  url: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", file}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "redsi") {
		t.Fatalf("err = %v, want one line naming the unknown field", err)
	}
}
