package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cachekeeper/cachekeeper/cache"
)

// Read paths the checker's readers can take (ConsistencyOptions.ReadPath).
const (
	// ReadLeases reads through the application's read path, package cache:
	// on a miss one reader is granted the key's lease, loads the row with
	// the cache's own query and fills the key, fenced like the worker's
	// warms; the others wait for the fill.
	ReadLeases = "leases"
	// ReadCacheAside is the plain read: HGET, on a miss the database and a
	// coalesced warm.
	ReadCacheAside = "cache-aside"
)

// ReadPaths lists the read paths, the default first.
var ReadPaths = []string{ReadLeases, ReadCacheAside}

// LeaseReader reads through package cache, each Get on its own (no single
// flight in the process), as readers in separate processes would: every
// reader goes through the lease protocol.
func LeaseReader(env ReaderEnv) (Reader, error) {
	r, err := cache.New(context.Background(), env.Config, cache.Options{Redis: env.Redis, DB: env.DB, NoSingleFlight: true})
	if err != nil {
		return nil, fmt.Errorf("bench consistency: lease reader: %w", err)
	}
	return leaseReader{r: r}, nil
}

type leaseReader struct{ r *cache.Reader }

func (l leaseReader) Read(ctx context.Context, c, id string) (int64, error) {
	row, err := l.r.Get(ctx, c, id)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(row["version"], 10, 64)
}
