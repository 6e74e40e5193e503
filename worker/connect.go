package worker

import (
	"errors"
	"fmt"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Connect opens the connections New needs, from cfg as Load returns it: a
// Redis client for cfg.Redis, a tasks.Client on it with cfg.KeyPrefix, and
// the database of cfg.Database when a cache is declared (opened, not yet
// connected). Release them with Deps.Close once Run has returned. Deps.Registry
// is left nil (no metrics).
func Connect(cfg config.Config) (Deps, error) {
	rdb, err := cfg.Redis.NewClient()
	if err != nil {
		return Deps{}, fmt.Errorf("worker: redis: %w", err)
	}
	d := Deps{Redis: rdb, Client: tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix(cfg.KeyPrefix))}
	if len(cfg.Caches) > 0 {
		if d.DB, err = sqldb.Open(cfg.Database); err != nil {
			_ = rdb.Close()
			return Deps{}, fmt.Errorf("worker: database: %w", err)
		}
	}
	return d, nil
}

// Close closes the connections of Deps made by Connect: the tasks client,
// the database and the Redis client.
func (d Deps) Close() error {
	var errs []error
	if d.Client != nil {
		errs = append(errs, d.Client.Close())
	}
	if d.DB != nil {
		errs = append(errs, d.DB.Close())
	}
	if d.Redis != nil {
		errs = append(errs, d.Redis.Close())
	}
	return errors.Join(errs...)
}
