package config

import (
	"fmt"
	"time"
)

// PaceConfig sets how maintenance paces itself by what the other clients of
// Redis experience (YAML block `pace:`): pattern and tag invalidation, tag
// pruning, session cleanup, rate-limit pruning and warm_all writes. Every
// second the batches are held for a short quiet window in which the other
// clients' commands are counted (INFO's total_commands_processed). At or
// under idle_commands_per_second nobody is there to protect: batches of
// max_batch run back to back. Above it, batches are kept small enough that
// one holds Redis for at most half of latency_budget (a walk's SCAN page and
// its batch may run back to back), and take at most max_share of the time;
// a probe PINGs Redis every probe_interval, and when its round trips while
// the batches run exceed those of the quiet windows by more than
// latency_budget, the rate is cut by 30%; when they are back under, it grows
// again (AIMD). max_keys_per_second, where a job has one, still caps the
// rate.
type PaceConfig struct {
	// Disabled turns pacing off: fixed batches of max_batch keys, back to
	// back, limited only by max_keys_per_second.
	Disabled bool `yaml:"disabled,omitempty"`
	// LatencyBudget is the latency maintenance may add to the application's
	// commands (default 300us).
	LatencyBudget time.Duration `yaml:"latency_budget"`
	// MinBatch and MaxBatch bound the keys per batch (defaults 20 and 1000).
	MinBatch int `yaml:"min_batch"`
	MaxBatch int `yaml:"max_batch"`
	// MaxPause bounds the pause between batches (default 50ms).
	MaxPause time.Duration `yaml:"max_pause"`
	// MaxShare is the largest share of the time the batches' round trips
	// may take, between 0 and 1 (default 0.5): on a small machine Redis and
	// the application need the CPUs too.
	MaxShare float64 `yaml:"max_share"`
	// ProbeInterval is how often the probe PINGs Redis while a job runs
	// (default 5ms).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// IdleCommandsPerSecond is the other clients' rate, in commands per
	// second, at or under which Redis counts as idle and maintenance runs
	// at full speed (default 200; an idle cachekeeper worker sends a few
	// dozen a second, an application being served far more).
	IdleCommandsPerSecond int `yaml:"idle_commands_per_second"`
}

func (p *PaceConfig) setDefaults() {
	p.LatencyBudget = 300 * time.Microsecond
	p.MaxShare = 0.5
	p.MinBatch = 20
	p.MaxBatch = 1000
	p.MaxPause = 50 * time.Millisecond
	p.ProbeInterval = 5 * time.Millisecond
	p.IdleCommandsPerSecond = 200
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
	case p.MaxShare <= 0 || p.MaxShare > 1:
		return fmt.Errorf("pace.max_share must be above 0 and at most 1 (a share of the time, such as 0.5), got %g", p.MaxShare)
	case p.ProbeInterval < time.Millisecond || p.ProbeInterval > time.Second:
		return fmt.Errorf("pace.probe_interval must be between 1ms and 1s, got %s", p.ProbeInterval)
	case p.IdleCommandsPerSecond < 1:
		return fmt.Errorf("pace.idle_commands_per_second must be at least 1 (other clients' commands per second under which Redis counts as idle), got %d", p.IdleCommandsPerSecond)
	}
	return nil
}
