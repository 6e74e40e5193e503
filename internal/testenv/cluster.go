package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster on loopback TCP ports (a cluster cannot
// run on unix sockets), stopped when the test ends.
type Cluster struct {
	// Addrs are every node's host:port, masters first.
	Addrs []string
	// Client is a cluster client over every node.
	Client *redis.ClusterClient
	nodes  []*clusterNode
}

type clusterNode struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	dead bool
}

// ClusterNodeTimeout is the nodes' cluster-node-timeout: a master that stops
// answering is failed over about two of these later.
const ClusterNodeTimeout = time.Second

// NewCluster starts masters masters, each with replicas replicas, and waits
// until every slot is served and every replica is in sync. It fails the
// test when redis-server is missing under CI=true, and skips it otherwise.
// Starting takes a few seconds.
func NewCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	bin := redisServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := masters * (1 + replicas)
	c := &Cluster{}
	var clients []*redis.Client
	var busPorts []int
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		port, bus := clusterPort(t), clusterPort(t)
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-port", fmt.Sprint(bus), "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", fmt.Sprint(ClusterNodeTimeout.Milliseconds()), "--cluster-replica-validity-factor", "0",
			"--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		node := &clusterNode{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
		t.Cleanup(func() {
			node.kill()
			if t.Failed() {
				t.Logf("redis-server %s log:\n%s", node.addr, logs.String())
			}
		})
		rc := redis.NewClient(&redis.Options{Addr: node.addr})
		t.Cleanup(func() { _ = rc.Close() })
		poll(t, ctx, func() bool { return rc.Ping(ctx).Err() == nil })
		c.nodes, c.Addrs = append(c.nodes, node), append(c.Addrs, node.addr)
		clients, busPorts = append(clients, rc), append(busPorts, bus)
	}
	per := 16384 / masters
	for i := 0; i < masters; i++ {
		lo, hi := i*per, (i+1)*per-1
		if i == masters-1 {
			hi = 16383
		}
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("addslots: %v", err)
		}
	}
	for i := 1; i < n; i++ {
		host, port, _ := net.SplitHostPort(c.Addrs[i])
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port, busPorts[i]).Err(); err != nil {
			t.Fatalf("cluster meet: %v", err)
		}
	}
	known := fmt.Sprintf("cluster_known_nodes:%d", n)
	poll(t, ctx, func() bool {
		for _, rc := range clients {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, known) {
				return false
			}
		}
		return true
	})
	for r := masters; r < n; r++ {
		master := (r - masters) % masters
		id, err := clients[master].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, func() bool { return clients[r].Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil })
	}
	poll(t, ctx, func() bool {
		for i, rc := range clients {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
			if i >= masters {
				repl, err := rc.Info(ctx, "replication").Result()
				if err != nil || !strings.Contains(repl, "master_link_status:up") {
					return false
				}
			}
		}
		return true
	})
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = c.Client.Close() })
	poll(t, ctx, func() bool {
		for i := 0; i < 30; i++ {
			if c.Client.Set(ctx, fmt.Sprintf("probe:%d", i), 1, time.Second).Err() != nil {
				return false
			}
		}
		return true
	})
	return c
}

// MasterOf returns the index in Addrs of the node serving key's slot now.
func (c *Cluster) MasterOf(ctx context.Context, key string) (int, error) {
	for _, n := range c.nodes {
		if n.isDead() {
			continue
		}
		rc := redis.NewClient(&redis.Options{Addr: n.addr})
		s, err := rc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			_ = rc.Close()
			continue
		}
		shards, err := rc.ClusterSlots(ctx).Result()
		_ = rc.Close()
		if err != nil {
			continue
		}
		for _, sh := range shards {
			if int64(sh.Start) <= s && s <= int64(sh.End) && len(sh.Nodes) > 0 {
				for j, a := range c.Addrs {
					if a == sh.Nodes[0].Addr {
						return j, nil
					}
				}
			}
		}
	}
	return -1, fmt.Errorf("no live node knows the master of %q", key)
}

// Kill stops node i with SIGKILL.
func (c *Cluster) Kill(i int) { c.nodes[i].kill() }

func (n *clusterNode) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dead {
		return
	}
	n.dead = true
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

func (n *clusterNode) isDead() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dead
}

// redisServer returns the path of redis-server, or ends the test.
func redisServer(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if CI() {
			t.Fatal("CI=true and redis-server is not on PATH: install it (apt-get install redis-server)")
		}
		t.Skip("redis-server not on PATH")
	}
	return bin
}

// clusterPort returns a loopback TCP port below the kernel's ephemeral
// range (32768 and up on Linux) that was free a moment ago. A cluster node
// binds two ports some time after they are chosen; a port from FreePort is
// an ephemeral one, which any outgoing connection of a parallel test may
// take meanwhile (the node then exits: "bind: Address already in use").
func clusterPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken: try another
		}
		_ = l.Close()
		return p
	}
	t.Fatal("no free loopback port in 20000-31999")
	return 0
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
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
