package config

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis: one URL for a single server, or
// cluster_addrs / sentinel for production topologies.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port/db, rediss:// for TLS, or
	// unix://[user:password@]/path/to/redis.sock?db=N.
	URL string `yaml:"url"`
	// ClusterAddrs, when set, connects to a Redis Cluster through these seed
	// nodes; user, password and TLS come from URL.
	ClusterAddrs []string `yaml:"cluster_addrs,omitempty"`
	// Sentinel, when set, connects to the master Sentinel names.
	Sentinel *SentinelConfig `yaml:"sentinel,omitempty"`
	// Password overrides the password of URL (for secrets kept apart).
	Password string `yaml:"password,omitempty"`
	// TLS sets the CA, client certificate and server name (redis_tls.go).
	TLS RedisTLSConfig `yaml:"tls,omitempty"`
}

// SentinelConfig names a Sentinel-managed master.
type SentinelConfig struct {
	MasterName string   `yaml:"master_name"`
	Addrs      []string `yaml:"addrs"`
	Password   string   `yaml:"password,omitempty"`
}

func (r *RedisConfig) validate() error {
	if _, err := r.Options(); err != nil {
		return err
	}
	if r.Sentinel != nil && len(r.ClusterAddrs) > 0 {
		return errors.New("redis: set cluster_addrs or sentinel, not both")
	}
	if r.Sentinel != nil && (r.Sentinel.MasterName == "" || len(r.Sentinel.Addrs) == 0) {
		return errors.New("redis.sentinel needs master_name and at least one address in addrs")
	}
	return nil
}

// Options parses URL into go-redis options for a single server.
func (r *RedisConfig) Options() (*redis.Options, error) {
	if r.URL == "" {
		return nil, errors.New("redis.url is empty; set it (or CACHEKEEPER_REDIS_URL) to redis://host:6379/0")
	}
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url %q: %s (expected redis://[user:password@]host:port/db, rediss://... or unix:///path.sock)", RedactURL(r.URL), RedactError(err, r.URL))
	}
	if r.Password != "" {
		opt.Password = r.Password
	}
	if !r.TLS.IsZero() {
		if opt.Network == "unix" {
			return nil, fmt.Errorf("redis.tls is set but redis.url is a unix socket: TLS needs a TCP address (rediss://host:port)")
		}
		// Without server_name each connection checks the name of the address
		// it dials (every node of a cluster its own).
		if opt.TLSConfig, err = r.TLS.apply(opt.TLSConfig); err != nil {
			return nil, err
		}
	}
	return opt, nil
}

// ConnOpt returns the asynq connection option for this configuration.
func (r *RedisConfig) ConnOpt() (asynq.RedisConnOpt, error) {
	opt, err := r.Options()
	if err != nil {
		return nil, err
	}
	switch {
	case len(r.ClusterAddrs) > 0:
		return clusterConnOpt{clusterOptions(r.ClusterAddrs, opt.Username, opt.Password, opt.TLSConfig)}, nil
	case r.Sentinel != nil:
		return asynq.RedisFailoverClientOpt{MasterName: r.Sentinel.MasterName, SentinelAddrs: r.Sentinel.Addrs,
			SentinelPassword: r.Sentinel.Password, Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig}, nil
	}
	return asynq.RedisClientOpt{Network: opt.Network, Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig}, nil
}

// NewClient opens a go-redis client for cachekeeper's own commands (cluster
// aware when cluster_addrs is set). The caller closes it.
func (r *RedisConfig) NewClient() (redis.UniversalClient, error) {
	opt, err := r.Options()
	if err != nil {
		return nil, err
	}
	switch {
	case len(r.ClusterAddrs) > 0:
		return newClusterClient(clusterOptions(r.ClusterAddrs, opt.Username, opt.Password, opt.TLSConfig)), nil
	case r.Sentinel != nil:
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: r.Sentinel.MasterName, SentinelAddrs: r.Sentinel.Addrs,
			SentinelPassword: r.Sentinel.Password, Username: opt.Username, Password: opt.Password, DB: opt.DB,
			TLSConfig: opt.TLSConfig, ContextTimeoutEnabled: true}), nil
	}
	// Honour context deadlines on every command, so a stuck Redis cannot hang
	// a job past its timeout.
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}
