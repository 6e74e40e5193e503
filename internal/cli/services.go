package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/redisacl"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
)

// services are the connections a command uses.
type services struct {
	cfg     config.Config
	connOpt asynq.RedisConnOpt
	redis   redis.UniversalClient
	db      *sqlx.DB
	client  *tasks.Client
}

// connect opens Redis (and the database when needDB), checking that each
// answers, so that a command fails early with one clear line.
func connect(ctx context.Context, cfg config.Config, needDB bool) (*services, error) {
	s := &services{cfg: cfg}
	var err error
	if s.connOpt, err = cfg.Redis.ConnOpt(); err != nil {
		return nil, usagef("%v", err)
	}
	if s.redis, err = cfg.Redis.NewClient(); err != nil {
		return nil, usagef("%v", err)
	}
	if err := pingRedis(ctx, s.redis, cfg); err != nil {
		s.Close()
		return nil, err
	}
	s.client = tasks.NewClientFromRedis(s.redis, cfg.ClientOptions()...)
	if needDB {
		if s.db, err = sqldb.Open(cfg.Database); err != nil {
			s.Close()
			return nil, usagef("%v", err)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := sqldb.Ping(pctx, s.db); err != nil {
			s.Close()
			return nil, fmt.Errorf("database at %s: %w (check --database-url)", config.RedactURL(cfg.Database.URL), err)
		}
	}
	return s, nil
}

func pingRedis(ctx context.Context, rdb redis.UniversalClient, cfg config.Config) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("redis at %s is unreachable: %v (start Redis or fix --redis-url)", config.RedactURL(cfg.Redis.URL), err)
	}
	return nil
}

// checkRedisPermissions checks that the Redis user may run what a worker
// with cfg needs (internal/redisacl). It returns the report's one-line
// error as a usage error (exit 2: the configuration or the ACL must
// change), or, when the permissions could not be checked, ErrUnchecked.
func checkRedisPermissions(ctx context.Context, rdb redis.UniversalClient, cfg config.Config) (redisacl.Report, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := redisacl.Check(cctx, rdb, redisacl.Needs(cfg))
	if err != nil {
		if !errors.Is(err, redisacl.ErrUnchecked) {
			err = fmt.Errorf("%w: %v", redisacl.ErrUnchecked, err)
		}
		return rep, err
	}
	if err := rep.Err(); err != nil {
		return rep, usagef("%v", err)
	}
	return rep, nil
}

// inspector returns an asynq inspector sharing the Redis connection.
func (s *services) inspector() *asynq.Inspector { return asynq.NewInspectorFromRedisClient(s.redis) }

// Close releases every connection.
func (s *services) Close() {
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.db != nil {
		_ = s.db.Close()
	}
	if s.redis != nil {
		_ = s.redis.Close()
	}
}
