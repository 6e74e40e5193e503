package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process on a loopback TCP port that a test can
// kill and start again with the same port, directory and options (for
// example with appendonly, to check what survives a restart).
type Server struct {
	Addr string
	bin  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// NewServer starts redis-server with extra options on a free port, in a
// temporary directory, until the test ends.
func NewServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := redisServer(t)
	dir := t.TempDir()
	port := FreePort(t)
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), bin: bin,
		args: append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--loglevel", "warning"}, extra...)}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() && s.logs != nil {
			t.Logf("redis-server %s log:\n%s", s.Addr, s.logs.String())
		}
	})
	s.Start(t)
	return s
}

// Start starts the server (again) and waits until it answers PING.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	s.logs = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	err := s.cmd.Start()
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poll(t, ctx, func() bool { return c.Ping(ctx).Err() == nil })
}

// Kill stops the server with SIGKILL (nothing is flushed that was not
// already written).
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Sentinel is a private Sentinel group: one master, one replica and three
// sentinels on loopback, with quick failure detection.
type Sentinel struct {
	MasterName string
	// Master and Replica are the data nodes as started (roles swap on failover).
	Master, Replica *Server
	// Addrs are the sentinels' host:port.
	Addrs []string
}

// NewSentinel starts the group and waits until every sentinel knows the
// replica and the other sentinels.
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	master := NewServer(t, "--appendonly", "no")
	replica := NewServer(t, "--appendonly", "no", "--replicaof", "127.0.0.1", strings.Split(master.Addr, ":")[1])
	g := &Sentinel{MasterName: "ckmaster", Master: master, Replica: replica}
	port := strings.Split(master.Addr, ":")[1]
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		sp := FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %s 2\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			sp, dir, g.MasterName, port, g.MasterName, g.MasterName, g.MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(redisServer(t), conf, "--sentinel")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start sentinel: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("sentinel %d log:\n%s", sp, logs.String())
			}
		})
		g.Addrs = append(g.Addrs, fmt.Sprintf("127.0.0.1:%d", sp))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	poll(t, ctx, func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	for _, a := range g.Addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a})
		poll(t, ctx, func() bool {
			m, err := sc.Master(ctx, g.MasterName).Result()
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
		})
		_ = sc.Close()
	}
	return g
}

// MasterAddr is the master's address as the first answering sentinel says.
func (g *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, a := range g.Addrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a})
		hp, err := sc.GetMasterAddrByName(ctx, g.MasterName).Result()
		_ = sc.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		last = err
	}
	return "", last
}
