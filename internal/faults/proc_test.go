package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// proc is one cachekeeper process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

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

// writeConfig writes a YAML configuration into the test's directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cachekeeper.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs `cachekeeper args...`; the process is killed when the test ends.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(binary, args...), logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = append(os.Environ(), "CACHEKEEPER_LOG_LEVEL=info")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(p.logs.String(), 6000))
		}
	})
	return p
}

func startWorker(t *testing.T, name, cfg string) *proc {
	t.Helper()
	return start(t, name, "worker", "--config", cfg)
}

// startedWorker starts a worker and waits until its servers run.
func startedWorker(t *testing.T, name, cfg string) *proc {
	t.Helper()
	p := startWorker(t, name, cfg)
	waitUntil(t, 20*time.Second, name+" started", func() bool { return p.count("worker started") > 0 })
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// signal sends sig and returns when it was sent.
func (p *proc) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	return time.Now()
}

// waitExit waits for the process to end, at most d.
func (p *proc) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running %s after the signal", p.name, d)
	}
}

// count is how many log lines contain s.
func (p *proc) count(s string) int { return strings.Count(p.logs.String(), s) }

// waitUntil polls cond every 20ms for at most d and returns how long it
// took; it fails the test when d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// taskState returns a task's state, or "" when it cannot be read.
func taskState(insp *asynq.Inspector, queue, id string) asynq.TaskState {
	info, err := insp.GetTaskInfo(queue, id)
	if err != nil {
		return 0
	}
	return info.State
}

// producer enqueues notify jobs every interval until stopped and keeps the
// ids Redis acknowledged (Enqueue returned no error).
type producer struct {
	mu     sync.Mutex
	acked  []string
	ackAt  []time.Time
	failed int
	stop   context.CancelFunc
	done   chan struct{}
}

func produce(c *asynq.Client, queue string, interval time.Duration) *producer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &producer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			task := asynq.NewTask("notify:publish", []byte(fmt.Sprintf(`{"channel":"faults","message":"%d"}`, i)))
			ectx, ecancel := context.WithTimeout(ctx, time.Second)
			info, err := c.EnqueueContext(ectx, task, asynq.Queue(queue), asynq.Retention(time.Hour), asynq.MaxRetry(25))
			ecancel()
			p.mu.Lock()
			if err != nil {
				p.failed++
			} else {
				p.acked = append(p.acked, info.ID)
				p.ackAt = append(p.ackAt, time.Now())
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *producer) halt() { p.stop(); <-p.done }

// ackedAfter returns the first id acknowledged after t, or "".
func (p *producer) ackedAfter(t time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, at := range p.ackAt {
		if at.After(t) {
			return p.acked[i]
		}
	}
	return ""
}

func (p *producer) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

// allCompleted waits until every acknowledged job is completed and no job of
// queue is active or pending; it returns how long that took.
func allCompleted(t *testing.T, rdb redis.UniversalClient, queue string, ids []string, d time.Duration) time.Duration {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	left := append([]string(nil), ids...)
	return waitUntil(t, d, fmt.Sprintf("all %d acknowledged jobs completed", len(ids)), func() bool {
		var still []string
		for _, id := range left {
			if taskState(insp, queue, id) != asynq.TaskStateCompleted {
				still = append(still, id)
			}
		}
		left = still
		if len(left) > 0 {
			return false
		}
		qi, err := insp.GetQueueInfo(queue)
		return err == nil && qi.Active == 0 && qi.Pending == 0
	})
}
