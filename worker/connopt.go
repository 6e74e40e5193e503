package worker

import (
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// resp2Opt builds the same go-redis client as base, speaking RESP2.
//
// asynq needs no RESP3 feature (task cancellation rides on pub/sub, which
// RESP2 has), while go-redis checks a RESP3 connection for pending push
// notifications around every command; the servers' clients do without.
type resp2Opt struct{ base asynq.RedisConnOpt }

// MakeRedisClient implements asynq.RedisConnOpt with the fields asynq's own
// options set (asynq.go, MakeRedisClient of each option type).
func (o resp2Opt) MakeRedisClient() interface{} {
	switch b := o.base.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{
			Network: b.Network, Addr: b.Addr, Username: b.Username, Password: b.Password, DB: b.DB,
			DialTimeout: b.DialTimeout, ReadTimeout: b.ReadTimeout, WriteTimeout: b.WriteTimeout,
			PoolSize: b.PoolSize, TLSConfig: b.TLSConfig, Protocol: 2,
		})
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: b.MasterName, SentinelAddrs: b.SentinelAddrs, SentinelUsername: b.SentinelUsername,
			SentinelPassword: b.SentinelPassword, Username: b.Username, Password: b.Password, DB: b.DB,
			DialTimeout: b.DialTimeout, ReadTimeout: b.ReadTimeout, WriteTimeout: b.WriteTimeout,
			PoolSize: b.PoolSize, TLSConfig: b.TLSConfig, Protocol: 2,
		})
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: b.Addrs, MaxRedirects: b.MaxRedirects, Username: b.Username, Password: b.Password,
			DialTimeout: b.DialTimeout, ReadTimeout: b.ReadTimeout, WriteTimeout: b.WriteTimeout,
			TLSConfig: b.TLSConfig, Protocol: 2,
		})
	}
	return o.base.MakeRedisClient()
}
