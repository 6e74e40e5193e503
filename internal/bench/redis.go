package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedisServer means no redis-server binary was found to start a private
// server; the caller then needs a Redis URL.
var ErrNoRedisServer = errors.New("redis-server not found on PATH")

// Redis is a private redis-server started for a benchmark on a loopback
// port (TCP, like an application reaching Redis) or a unix socket, without
// persistence, in a temporary directory. Close stops it and removes the
// directory.
type Redis struct {
	// URL connects to it (redis://127.0.0.1:PORT/0 or unix:///.../redis.sock).
	URL string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	dir    string
	out    *lockedBuffer
	once   sync.Once
}

// RedisOption adjusts StartRedis.
type RedisOption func(*redisOptions)

type redisOptions struct{ unix bool }

// OnUnixSocket makes StartRedis listen on a unix socket instead of a
// loopback port: less kernel work per round trip for both sides, which
// matters when Redis and the benchmark share two cores.
func OnUnixSocket() RedisOption { return func(o *redisOptions) { o.unix = true } }

// StartRedis starts a private redis-server (on a loopback port unless
// OnUnixSocket) and waits until it answers.
func StartRedis(ctx context.Context, opts ...RedisOption) (*Redis, error) {
	var ro redisOptions
	for _, o := range opts {
		o(&ro)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		r, err := startRedis(ctx, bin, ro)
		if err == nil {
			return r, nil
		}
		lastErr = err // most likely the port was taken between probe and start
	}
	return nil, lastErr
}

func startRedis(ctx context.Context, bin string, ro redisOptions) (*Redis, error) {
	port := 0
	if !ro.unix {
		var err error
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("private redis-server: find a free port: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "ckbench")
	if err != nil {
		return nil, fmt.Errorf("private redis-server: %w", err)
	}
	r := &Redis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), dir: dir, out: &lockedBuffer{}, exited: make(chan struct{})}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--loglevel", "warning", "--protected-mode", "yes"}
	if ro.unix {
		sock := filepath.Join(dir, "redis.sock")
		r.URL = "unix://" + sock
		args = append(args, "--unixsocket", sock, "--unixsocketperm", "700")
	}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		r.Close()
		return nil, err
	}
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return r, nil
		}
		select {
		case <-r.exited:
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server exited at start: %s", strings.TrimSpace(r.out.String()))
		case <-ctx.Done():
			r.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Close()
			return nil, fmt.Errorf("private redis-server at %s did not answer within 10s: %v", r.URL, err)
		}
	}
}

// Close stops the server and removes its directory.
func (r *Redis) Close() {
	r.once.Do(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		_ = os.RemoveAll(r.dir)
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the server's output for an error message.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4096 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
