package config

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterStateReloadInterval is how often a cluster client reloads the slot
// map even when nothing fails. go-redis v9.23 defaults to 60s, and reloads on
// its own only after MOVED/ASK/READONLY replies, not after a connection
// error: with a master dead, a client kept dialing it until the next periodic
// reload (a queue stalled 15-61 s after the replica's promotion). Reloading
// is one CLUSTER SLOTS call, so every few seconds costs Redis nothing worth
// counting; connection errors also trigger an immediate reload (see
// reloadOnErrorHook), so the interval only bounds how stale the map can get
// without traffic.
const ClusterStateReloadInterval = 5 * time.Second

// clusterOptions are the go-redis options of every cluster client
// cachekeeper makes (asynq's servers, inspector and cachekeeper's own).
func clusterOptions(addrs []string, username, password string, tlsConfig *tls.Config) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs: addrs, Username: username, Password: password, TLSConfig: tlsConfig,
		ContextTimeoutEnabled:      true,
		ClusterStateReloadInterval: ClusterStateReloadInterval,
	}
}

// newClusterClient makes a cluster client that reloads its slot map when a
// node stops answering.
func newClusterClient(opt *redis.ClusterOptions) *redis.ClusterClient {
	c := redis.NewClusterClient(opt)
	c.AddHook(reloadOnErrorHook{c})
	return c
}

// clusterConnOpt is the asynq connection option for a cluster: asynq's own
// RedisClusterClientOpt cannot set the reload interval or add the hook.
type clusterConnOpt struct{ opt *redis.ClusterOptions }

// MakeRedisClient implements asynq.RedisConnOpt.
func (o clusterConnOpt) MakeRedisClient() interface{} {
	opt := *o.opt // each client gets its own copy (go-redis fills in defaults)
	return newClusterClient(&opt)
}

// reloadOnErrorHook asks the cluster client to reload its slot map after a
// command fails with a network error (refused, reset, timeout): the node may
// have died and a replica taken over its slots. go-redis dedups concurrent
// reload requests, so a burst of errors costs one CLUSTER SLOTS.
type reloadOnErrorHook struct{ c *redis.ClusterClient }

func (h reloadOnErrorHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.c.ReloadState(ctx)
		}
		return conn, err
	}
}

func (h reloadOnErrorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if isNetworkError(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnErrorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if isNetworkError(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

// isNetworkError reports whether err is a failure to talk to a node rather
// than a reply (redis.Nil and error replies such as WRONGTYPE are replies;
// CLUSTERDOWN and TRYAGAIN, which come during a failover, count as failures).
func isNetworkError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded)
}
