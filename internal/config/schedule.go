package config

import (
	"fmt"
	"time"
)

// ScheduleEntry is one periodic job.
type ScheduleEntry struct {
	Name string `yaml:"name"`
	// Schedule is a cron expression (seconds optional), @every 30s, @hourly...
	Schedule string `yaml:"schedule"`
	// TimeZone is an IANA name such as Europe/Paris (default UTC).
	TimeZone string         `yaml:"time_zone,omitempty"`
	Kind     string         `yaml:"kind"`
	Args     map[string]any `yaml:"args,omitempty"`
	Queue    string         `yaml:"queue,omitempty"`
	Timeout  time.Duration  `yaml:"timeout,omitempty"`
	// CatchUp is "none" (default) or "one": run a single missed tick on start.
	CatchUp string `yaml:"catch_up,omitempty"`
}

func (c *Config) validateSchedule() error {
	seen := map[string]bool{}
	for i, e := range c.Schedule {
		if e.Name == "" {
			return fmt.Errorf("schedule[%d].name must not be empty", i)
		}
		if seen[e.Name] {
			return fmt.Errorf("schedule: name %q is used twice", e.Name)
		}
		seen[e.Name] = true
		if e.Schedule == "" || e.Kind == "" {
			return fmt.Errorf("schedule.%s needs schedule and kind", e.Name)
		}
	}
	return nil
}
