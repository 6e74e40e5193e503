// Package scantest starts a private Redis Cluster for tests of code that
// must work on every master (scans, per-slot scripts).
package scantest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// NewCluster starts a private three-master Redis Cluster (no replicas) on
// loopback TCP ports, since a cluster cannot run on unix sockets, and stops
// it when the test ends. It skips the test when redis-server is not on PATH
// (and fails it when CI=true). Starting takes about two seconds.
func NewCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if testenv.CI() {
			t.Fatal("CI=true and redis-server is not on PATH: install it (apt-get install redis-server)")
		}
		t.Skip("redis-server not on PATH: cluster test skipped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 3
	var nodes []*redis.Client
	var addrs []string
	var busPorts []int
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		port, bus := freePort(t), freePort(t)
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-port", fmt.Sprint(bus), "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("redis-server %d log:\n%s", i, logs.String())
			}
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		poll(t, ctx, func() bool { return c.Ping(ctx).Err() == nil })
		nodes, addrs, busPorts = append(nodes, c), append(addrs, addr), append(busPorts, bus)
	}
	per := 16384 / n
	for i, c := range nodes {
		lo, hi := i*per, (i+1)*per-1
		if i == n-1 {
			hi = 16383
		}
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("addslots: %v", err)
		}
	}
	for i := 1; i < n; i++ {
		host, port, _ := net.SplitHostPort(addrs[i])
		if err := nodes[0].Do(ctx, "CLUSTER", "MEET", host, port, busPorts[i]).Err(); err != nil {
			t.Fatalf("cluster meet: %v", err)
		}
	}
	poll(t, ctx, func() bool {
		for _, c := range nodes {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return false
			}
		}
		return true
	})
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cc.Close() })
	poll(t, ctx, func() bool {
		// Every master must answer for its slots through the cluster client.
		for i := 0; i < 30; i++ {
			if cc.Set(ctx, fmt.Sprintf("probe:%d", i), 1, time.Second).Err() != nil {
				return false
			}
		}
		return true
	})
	return cc
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func poll(t testing.TB, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
