package config

import (
	"fmt"
	"time"
)

// PaceConfig sets how maintenance paces itself by what Redis is doing
// (YAML block `pace:`): pattern and tag invalidation, tag pruning, session
// cleanup, rate-limit pruning and warm_all writes. A probe PINGs Redis every
// probe_interval; when the latency it sees above its floor exceeds
// latency_budget, the batch is halved and the pause between batches doubled,
// and when it is back under, the pause shrinks and the batch grows again
// (AIMD). max_keys_per_second, where a job has one, still caps the rate.
type PaceConfig struct {
	// Disabled turns pacing off: fixed batches of max_batch keys, back to
	// back, limited only by max_keys_per_second.
	Disabled bool `yaml:"disabled,omitempty"`
	// LatencyBudget is the latency maintenance may add to the application's
	// commands (default 500us).
	LatencyBudget time.Duration `yaml:"latency_budget"`
	// MinBatch and MaxBatch bound the keys per batch (defaults 20 and 1000).
	MinBatch int `yaml:"min_batch"`
	MaxBatch int `yaml:"max_batch"`
	// MaxPause bounds the pause between batches (default 50ms).
	MaxPause time.Duration `yaml:"max_pause"`
	// ProbeInterval is how often the probe PINGs Redis while a job runs
	// (default 5ms).
	ProbeInterval time.Duration `yaml:"probe_interval"`
}

func (p *PaceConfig) setDefaults() {
	p.LatencyBudget = 500 * time.Microsecond
	p.MinBatch = 20
	p.MaxBatch = 1000
	p.MaxPause = 50 * time.Millisecond
	p.ProbeInterval = 5 * time.Millisecond
}

func (p *PaceConfig) validate() error {
	switch {
	case p.LatencyBudget < 50*time.Microsecond || p.LatencyBudget > time.Second:
		return fmt.Errorf("pace.latency_budget must be between 50us and 1s, got %s", p.LatencyBudget)
	case p.MinBatch < 1:
		return fmt.Errorf("pace.min_batch must be at least 1, got %d", p.MinBatch)
	case p.MaxBatch < p.MinBatch || p.MaxBatch > 100000:
		return fmt.Errorf("pace.max_batch must be between pace.min_batch (%d) and 100000, got %d", p.MinBatch, p.MaxBatch)
	case p.MaxPause < time.Millisecond || p.MaxPause > 10*time.Second:
		return fmt.Errorf("pace.max_pause must be between 1ms and 10s, got %s", p.MaxPause)
	case p.ProbeInterval < time.Millisecond || p.ProbeInterval > time.Second:
		return fmt.Errorf("pace.probe_interval must be between 1ms and 1s, got %s", p.ProbeInterval)
	}
	return nil
}
