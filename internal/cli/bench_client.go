package cli

import (
	"log/slog"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/redis/go-redis/v9"
	ucli "github.com/urfave/cli/v2"
)

// benchClient connects to the scenario's Redis (see benchRedis) and checks
// that it answers; closeFn closes the client and stops a private server.
func benchClient(c *ucli.Context, logger *slog.Logger) (rdb redis.UniversalClient, url string, closeFn func(), err error) {
	url, _, closeRedis, err := benchRedis(c, logger)
	if err != nil {
		return nil, "", nil, err
	}
	rc := config.RedisConfig{URL: url}
	if rdb, err = rc.NewClient(); err != nil {
		closeRedis()
		return nil, "", nil, usagef("%v", err)
	}
	closeFn = func() { _ = rdb.Close(); closeRedis() }
	if err := pingRedis(c.Context, rdb, config.Config{Redis: rc}); err != nil {
		closeFn()
		return nil, "", nil, err
	}
	return rdb, url, closeFn, nil
}

// benchClients is benchClient plus a second client of its own on the same
// Redis (an application loop, a producer in another language), closed by
// closeFn too.
func benchClients(c *ucli.Context, logger *slog.Logger) (rdb, second redis.UniversalClient, closeFn func(), err error) {
	rdb, url, closeRedis, err := benchClient(c, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	if second, err = (&config.RedisConfig{URL: url}).NewClient(); err != nil {
		closeRedis()
		return nil, nil, nil, err
	}
	return rdb, second, func() { _ = second.Close(); closeRedis() }, nil
}
