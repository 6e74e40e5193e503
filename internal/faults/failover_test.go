package faults

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// flowBound is what docs/reliability.md promises after a failover: jobs of
// the failed master's queue flow again within it of the promotion.
const flowBound = 5 * time.Second

func notifyConfig(redis string) string {
	return redis + `
worker:
  concurrency: 4
  servers: 2
  shutdown_timeout: 3s
  metrics_addr: ""
log: {format: json}
`
}

// flowAfter waits until a job acknowledged after t has completed and
// returns when that was.
func flowAfter(t *testing.T, rdb redis.UniversalClient, p *producer, after time.Time, d time.Duration) time.Time {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var id string
	var state string
	defer func() {
		if t.Failed() {
			t.Logf("job acknowledged after the failover: %q (state %s); acknowledged %d, refused %d", id, state, len(p.ids()), p.failed)
		}
	}()
	waitUntil(t, d, "a job enqueued after the failover completed", func() bool {
		if id == "" {
			id = p.ackedAfter(after)
			if id == "" {
				return false
			}
		}
		info, err := insp.GetTaskInfo("default", id)
		if err != nil {
			state = err.Error() + " " + fmt.Sprint(rdb.SMembers(context.Background(), "asynq:queues").Val()) + " " + fmt.Sprint(rdb.Exists(context.Background(), keys.AsynqTaskPrefix("default")+id).Val())
			return false
		}
		state = info.State.String()
		return info.State == asynq.TaskStateCompleted
	})
	return time.Now()
}

// TestClusterMasterKilled kills, with SIGKILL, the master that holds the
// default queue of a Redis Cluster of three masters and three replicas
// while a producer enqueues: once its replica is promoted, jobs flow again
// within flowBound, and every acknowledged job completes.
func TestClusterMasterKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.NewCluster(t, 3, 1)
	cfg := writeConfig(t, notifyConfig(fmt.Sprintf("redis: {url: \"redis://%s/0\", cluster_addrs: [%s]}", c.Addrs[0], strings.Join(c.Addrs, ", "))))
	startedWorker(t, "worker", cfg)
	// The producer and the checks use cachekeeper's own cluster client (it
	// reloads the slot map on errors and every few seconds).
	rcfg := config.RedisConfig{URL: "redis://" + c.Addrs[0] + "/0", ClusterAddrs: c.Addrs}
	prodRdb, err := rcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer prodRdb.Close()
	p := produce(asynq.NewClientFromRedisClient(prodRdb), "default", 20*time.Millisecond)
	defer p.halt()
	time.Sleep(2 * time.Second)

	m, err := c.MasterOf(ctx, keys.AsynqPending("default"))
	if err != nil {
		t.Fatal(err)
	}
	replica := m + 3 // NewCluster gives master i the replica 3+i
	c.Kill(m)
	killed := time.Now()
	rc := redis.NewClient(&redis.Options{Addr: c.Addrs[replica]})
	defer rc.Close()
	waitUntil(t, 30*time.Second, "replica promoted", func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "role:master")
	})
	afterPromotion(t, "cluster", prodRdb, p, killed)
}

// TestSentinelMasterKilled kills the master of a Sentinel group (one
// master, one replica, three sentinels): once the replica is promoted, jobs
// flow again within flowBound and every acknowledged job completes.
func TestSentinelMasterKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.NewSentinel(t)
	cfg := writeConfig(t, notifyConfig(fmt.Sprintf("redis: {url: \"redis://%s/0\", sentinel: {master_name: %s, addrs: [%s]}}",
		g.Master.Addr, g.MasterName, strings.Join(g.Addrs, ", "))))
	startedWorker(t, "worker", cfg)
	rcfg := config.RedisConfig{URL: "redis://" + g.Master.Addr + "/0", Sentinel: &config.SentinelConfig{MasterName: g.MasterName, Addrs: g.Addrs}}
	rdb, err := rcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	p := produce(asynq.NewClientFromRedisClient(rdb), "default", 20*time.Millisecond)
	defer p.halt()
	time.Sleep(2 * time.Second)
	g.Master.Kill()
	killed := time.Now()
	waitUntil(t, 30*time.Second, "replica promoted", func() bool {
		a, err := g.MasterAddr(ctx)
		return err == nil && a == g.Replica.Addr
	})
	afterPromotion(t, "sentinel", rdb, p, killed)
}

// TestRedisRestartWithAOF kills Redis (SIGKILL; appendonly with fsync
// always) while a producer enqueues and a worker runs jobs, and starts it
// again: no acknowledged job is lost and none is left active (those that
// were active when Redis died are requeued by the recoverer within its
// bound).
func TestRedisRestartWithAOF(t *testing.T) {
	t.Parallel()
	s := testenv.NewServer(t, "--appendonly", "yes", "--appendfsync", "always")
	cfg := writeConfig(t, notifyConfig(fmt.Sprintf("redis: {url: \"redis://%s/0\"}", s.Addr)))
	w := startedWorker(t, "worker", cfg)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer rdb.Close()
	p := produce(asynq.NewClientFromRedisClient(rdb), "default", 5*time.Millisecond)
	defer p.halt()
	time.Sleep(2 * time.Second)
	s.Kill()
	time.Sleep(500 * time.Millisecond)
	s.Start(t)
	restarted := time.Now()
	flowed := flowAfter(t, rdb, p, restarted, 30*time.Second)
	t.Logf("Redis restarted with AOF: jobs flowed again %.2fs after the restart", flowed.Sub(restarted).Seconds())
	time.Sleep(time.Second)
	p.halt()
	ids := p.ids()
	took := allCompleted(t, rdb, "default", ids, 40*time.Second)
	t.Logf("AOF restart: all %d acknowledged jobs completed (%d enqueues refused while Redis was down), none active, %.2fs after the producer stopped; %d requeued by the recoverer",
		len(ids), p.failed, took.Seconds(), strings.Count(w.logs.String(), "requeued jobs of a dead worker"))
	w.signal(t, syscall.SIGTERM)
	w.waitExit(t, 10*time.Second)
}

// afterPromotion checks, right after a replica's promotion, that jobs flow
// again within flowBound and that every acknowledged job completes.
func afterPromotion(t *testing.T, what string, rdb redis.UniversalClient, p *producer, killed time.Time) {
	t.Helper()
	promoted := time.Now()
	flowed := flowAfter(t, rdb, p, promoted, 30*time.Second)
	t.Logf("%s master killed: replica promoted after %.2fs; jobs flowed again %.2fs after the promotion (bound %s)",
		what, promoted.Sub(killed).Seconds(), flowed.Sub(promoted).Seconds(), flowBound)
	if flowed.Sub(promoted) > flowBound {
		t.Errorf("jobs flowed again %s after the promotion, want within %s", flowed.Sub(promoted), flowBound)
	}
	time.Sleep(time.Second)
	p.halt()
	ids := p.ids()
	took := allCompleted(t, rdb, "default", ids, 40*time.Second)
	t.Logf("%s: all %d acknowledged jobs completed (%d enqueues refused during the failover), none active, %.2fs after the producer stopped",
		what, len(ids), p.failed, took.Seconds())
}
