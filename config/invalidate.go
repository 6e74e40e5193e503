package config

import (
	"fmt"
	"time"
)

// InvalidateConfig tunes coalesced invalidation.
//
// tasks.Client.Invalidate (and cache:invalidate inbox entries that name one
// cache's ids, without options) add ids to the cache's pending set in Redis
// instead of enqueueing a job each. A worker blocked on the cache's wake
// list wakes at the first one, waits CoalesceWindow for company, then
// deletes the pending ids in fenced batches of up to CoalesceMaxSize keys,
// one script call and one event each, until none is left.
type InvalidateConfig struct {
	// CoalesceWindow is how long a worker waits after the first pending id
	// before it takes them: how much a lone invalidation is delayed, so
	// that invalidations arriving together go in one batch (0: none).
	CoalesceWindow time.Duration `yaml:"coalesce_window"`
	// CoalesceMaxSize is the most ids one coalesced batch carries.
	CoalesceMaxSize int `yaml:"coalesce_max_size"`
}

func (v *InvalidateConfig) setDefaults() {
	v.CoalesceWindow = time.Millisecond
	v.CoalesceMaxSize = 1000
}

func (v *InvalidateConfig) validate() error {
	if v.CoalesceWindow < 0 || v.CoalesceWindow > time.Second {
		return fmt.Errorf("invalidate.coalesce_window must be between 0 and 1s, got %s", v.CoalesceWindow)
	}
	if v.CoalesceMaxSize < 1 || v.CoalesceMaxSize > 10000 {
		return fmt.Errorf("invalidate.coalesce_max_size must be between 1 and 10000, got %d", v.CoalesceMaxSize)
	}
	return nil
}
