package config

import (
	"strings"
	"testing"
	"time"
)

func TestPaceValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		edit func(*PaceConfig)
		want string
	}{
		{func(*PaceConfig) {}, ""},
		{func(p *PaceConfig) { p.Disabled = true }, ""},
		{func(p *PaceConfig) { p.LatencyBudget = 10 * time.Microsecond }, "pace.latency_budget"},
		{func(p *PaceConfig) { p.MinBatch = 0 }, "pace.min_batch"},
		{func(p *PaceConfig) { p.MaxBatch = 5 }, "pace.max_batch"},
		{func(p *PaceConfig) { p.MaxPause = 0 }, "pace.max_pause"},
		{func(p *PaceConfig) { p.ProbeInterval = time.Hour }, "pace.probe_interval"},
		{func(p *PaceConfig) { p.MaxShare = 0 }, "pace.max_share"},
		{func(p *PaceConfig) { p.MaxShare = 1.5 }, "pace.max_share"},
		{func(p *PaceConfig) { p.IdleCommandsPerSecond = 0 }, "pace.idle_commands_per_second"},
	} {
		c := Default()
		tc.edit(&c.Pace)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", c.Pace, err, tc.want)
		}
	}
}

func TestPaceYAML(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := Parse([]byte("pace:\n  latency_budget: 1ms\n  max_batch: 500\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Pace.LatencyBudget != time.Millisecond || c.Pace.MaxBatch != 500 || c.Pace.MinBatch != 20 {
		t.Fatalf("pace = %+v, want budget 1ms, max_batch 500, default min_batch 20", c.Pace)
	}
}
