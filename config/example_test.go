package config_test

import (
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
)

// The shipped example configuration must load.
func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := config.Load("../deploy/cachekeeper.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Caches) != 1 || len(c.Schedule) != 3 || c.Sessions.IdleTimeout.Hours() != 2 {
		t.Fatalf("example not read as written: caches %d, schedule %d, idle %s", len(c.Caches), len(c.Schedule), c.Sessions.IdleTimeout)
	}
}
