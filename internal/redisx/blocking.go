package redisx

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// BLMove is BLMOVE with a timeout of any length. go-redis's BLMove sends
// whole seconds only: a shorter wait (a test's 50ms inbox block, a fast lane
// wait of 200ms) is logged as a warning and stretched to a full second.
// Redis has taken fractional timeouts since 6.0, so a sub-second timeout is
// sent as a fraction ("0.05"), within the client's read timeout (3s by
// default); a second or more goes through go-redis's own BLMove, which
// lengthens the read deadline to match (and drops a fraction of a second).
func BLMove(ctx context.Context, c Blocker, src, dst, srcPos, dstPos string, timeout time.Duration) *redis.StringCmd {
	if timeout <= 0 || timeout >= time.Second {
		return c.BLMove(ctx, src, dst, srcPos, dstPos, timeout)
	}
	cmd := redis.NewStringCmd(ctx, "blmove", src, dst, srcPos, dstPos, strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	_ = c.Process(ctx, cmd)
	return cmd
}

// Blocker is a go-redis client that can run a blocking command: a Client, a
// ClusterClient or a UniversalClient.
type Blocker interface {
	BLMove(ctx context.Context, src, dst, srcPos, dstPos string, timeout time.Duration) *redis.StringCmd
	Process(ctx context.Context, cmd redis.Cmder) error
}
