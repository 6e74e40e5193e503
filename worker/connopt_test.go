package worker

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestResp2OptKeepsSettings(t *testing.T) {
	t.Parallel()
	c := resp2Opt{asynq.RedisClientOpt{Network: "tcp", Addr: "10.0.0.1:6380", Username: "u", Password: "p", DB: 3, PoolSize: 7}}.MakeRedisClient().(*redis.Client)
	defer c.Close()
	o := c.Options()
	if o.Protocol != 2 || o.Addr != "10.0.0.1:6380" || o.Username != "u" || o.Password != "p" || o.DB != 3 || o.PoolSize != 7 {
		t.Fatalf("options = %+v", o)
	}
	cc := resp2Opt{asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000"}, Password: "p"}}.MakeRedisClient().(*redis.ClusterClient)
	defer cc.Close()
	if co := cc.Options(); co.Protocol != 2 || co.Password != "p" || len(co.Addrs) != 1 {
		t.Fatalf("cluster options = %+v", co)
	}
	fc := resp2Opt{asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"10.0.0.1:26379"}, DB: 2}}.MakeRedisClient().(*redis.Client)
	defer fc.Close()
	if fo := fc.Options(); fo.Protocol != 2 || fo.DB != 2 {
		t.Fatalf("failover options = %+v", fo)
	}
}
