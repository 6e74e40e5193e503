package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
)

// Processes runs the worker and the change stream as processes of a
// cachekeeper binary (`worker`, `changes`) with the run's configuration
// written to a file in Dir; stop kills them with SIGKILL, a crash.
type Processes struct {
	// Binary is the cachekeeper executable.
	Binary string
	// Dir holds the configuration files (it must exist).
	Dir string
}

// Start implements Parts.
func (p Processes) Start(ctx context.Context, what string, env PartEnv) (func() error, error) {
	cfg := env.Config
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.Worker.MetricsAddr = "127.0.0.1:" + strconv.Itoa(port)
	y, err := cfg.YAML()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(p.Dir, what+"-"+strconv.Itoa(port)+".yaml")
	if err := os.WriteFile(file, y, 0o600); err != nil {
		return nil, err
	}
	var args []string
	switch what {
	case "worker":
		args = []string{"worker", "--config", file}
	case "changes":
		args = []string{"changes", "--config", file, "--stream", env.Stream.Name, "--queue", env.Stream.Queue,
			"--lease-ttl", env.Stream.LeaseTTL.String(), "--metrics-addr", cfg.Worker.MetricsAddr}
	default:
		return nil, fmt.Errorf("bench consistency: unknown part %q", what)
	}
	cmd := exec.Command(p.Binary, args...)
	logs := &tailLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench consistency: start %s: %w", what, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return nil
	}
	ready := func() bool {
		if what == "changes" {
			s, err := changes.New(env.Stream, nil)
			if err != nil {
				return false
			}
			st, err := s.Status(ctx)
			return err == nil && st.SlotActive && st.Holder != ""
		}
		resp, err := http.Get("http://" + cfg.Worker.MetricsAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		select {
		case <-done:
			return nil, fmt.Errorf("bench consistency: %s exited at start: %s", what, logs.String())
		case <-ctx.Done():
			_ = stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, errors.New("bench consistency: " + what + " not ready within 30s: " + logs.String())
		}
	}
	return stop, nil
}

// tailLog keeps the last 4 KiB a process wrote.
type tailLog struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailLog) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailLog) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
