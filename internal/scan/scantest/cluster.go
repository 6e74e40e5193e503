// Package scantest starts a private Redis Cluster for tests of code that
// must work on every master (scans, per-slot scripts).
package scantest

import (
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// NewCluster starts a private three-master Redis Cluster (no replicas; see
// testenv.NewCluster) and returns a client over it.
func NewCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	return testenv.NewCluster(t, 3, 0).Client
}
