package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// validateSchedule checks the entries and what they refer to in the rest of
// the configuration: queues the worker serves and caches that exist.
func (c *Config) validateSchedule() error {
	if err := scheduler.ValidateEntries(c.Schedule); err != nil {
		return err
	}
	for _, e := range c.Schedule {
		if e.Queue != "" && len(c.Worker.Queues) > 0 {
			if _, ok := c.Worker.Queues[e.Queue]; !ok {
				return fmt.Errorf("schedule.%s.queue %q is not one of worker.queues (%s); add it there or pick one of them", e.Name, e.Queue, strings.Join(sortedKeys(c.Worker.Queues), ", "))
			}
		}
		p, err := e.Payload()
		if err != nil {
			return fmt.Errorf("schedule.%s.args: %v", e.Name, err)
		}
		var cache string
		switch a := p.(type) {
		case *tasks.WarmAllArgs:
			cache = a.Cache
		case *tasks.WarmArgs:
			cache = a.Cache
		case *tasks.InvalidateArgs:
			cache = a.Cache
		}
		if cache == "" {
			continue
		}
		spec, ok := c.Caches[cache]
		if !ok {
			return fmt.Errorf("schedule.%s.args.cache %q is not a cache declared under caches (%s)", e.Name, cache, strings.Join(sortedKeys(c.Caches), ", "))
		}
		if _, isAll := p.(*tasks.WarmAllArgs); isAll && spec.All == "" {
			return fmt.Errorf("schedule.%s: kind %s needs caches.%s.all (a keyset query) to be set", e.Name, e.Kind, cache)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
