package config

import (
	"fmt"
	"sort"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// OwnedKeys are the Redis keys the workers own outside key_prefix: the
// inbox list when inbox.key does not start with the prefix. With the prefix
// they make the internal-key rule (tasks.Guard): no job may delete, expire
// or rewrite them.
func (c Config) OwnedKeys() []string {
	if c.Inbox.Key == "" {
		return nil
	}
	return []string{c.Inbox.Key}
}

// Guard returns the internal-key guard of this configuration.
func (c Config) Guard() (*tasks.Guard, error) { return tasks.NewGuard(c.KeyPrefix, c.OwnedKeys()...) }

// QueueNames returns worker.queues' names, sorted (the fast lane's queue is
// one of them).
func (c Config) QueueNames() []string {
	out := make([]string, 0, len(c.Worker.Queues))
	for q := range c.Worker.Queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// CacheNames returns the configured caches' names, sorted.
func (c Config) CacheNames() []string {
	out := make([]string, 0, len(c.Caches))
	for n := range c.Caches {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ClientOptions returns the options that make a tasks.Client check what it
// sends against this configuration, as the workers will see it: their key
// prefix and owned keys (internal keys refused), their queues
// (tasks.WithQueues) and their caches (tasks.WithCaches).
func (c Config) ClientOptions() []tasks.ClientOption {
	return []tasks.ClientOption{
		tasks.WithKeyPrefix(c.KeyPrefix),
		tasks.WithOwnedKeys(c.OwnedKeys()...),
		tasks.WithQueues(c.QueueNames()...),
		tasks.WithCaches(c.CacheNames()...),
	}
}

// validateKeyTemplates refuses key templates that could render a key
// belonging to cachekeeper or to asynq (keys.Rule.CheckTemplate): a warm or
// a cleanup would then write, expire or delete it.
func (c *Config) validateKeyTemplates() error {
	rule := keys.NewRule(c.KeyPrefix, c.OwnedKeys()...)
	check := func(what, tpl string) error {
		if tpl == "" {
			return nil
		}
		t, err := keys.ParseTemplate(tpl)
		if err != nil {
			return nil // reported by the section's own check
		}
		return rule.CheckTemplate(what, t)
	}
	for _, name := range c.CacheNames() {
		if err := check(fmt.Sprintf("caches.%s.key", name), c.Caches[name].Key); err != nil {
			return err
		}
	}
	// Scheduled jobs are refused like any producer's.
	guard, err := c.Guard()
	if err != nil {
		return err
	}
	for _, e := range c.Schedule {
		if p, err := e.Payload(); err == nil {
			if err := guard.Check(p); err != nil {
				return fmt.Errorf("schedule.%s.args: %v", e.Name, err)
			}
		}
	}
	for _, t := range [][2]string{{"sessions.key", c.Sessions.Key}, {"sessions.index", c.Sessions.Index}, {"rate_limits.key", c.RateLimits.Key}} {
		if err := check(t[0], t[1]); err != nil {
			return err
		}
	}
	return nil
}
