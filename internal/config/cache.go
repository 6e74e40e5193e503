package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"gopkg.in/yaml.v3"
)

// CacheSpec declares one cache: how its keys are named and which SQL fills
// them. Result columns become hash fields.
type CacheSpec struct {
	// Key is the key template; its placeholders are result columns ("user:{id}").
	Key string `yaml:"key"`
	// TTL of every key of the cache.
	TTL time.Duration `yaml:"ttl"`
	// TTLJitter spreads expiries: "10%" makes each TTL up to 10% shorter.
	TTLJitter Percent `yaml:"ttl_jitter,omitempty"`
	// IDColumn is the column that holds the id (default "id").
	IDColumn string `yaml:"id_column,omitempty"`
	// ByIDs selects rows by id: "SELECT ... WHERE id IN (?)".
	ByIDs string `yaml:"by_ids"`
	// All pages through the table by keyset: "SELECT ... WHERE id > ? ORDER BY id LIMIT ?".
	All string `yaml:"all,omitempty"`
	// AllStart is the value the first keyset page of All starts after. Empty
	// means detected at start-up from the id column's type: the type's
	// smallest value for integers, "" for text, the nil UUID for uuid.
	AllStart string `yaml:"all_start,omitempty"`
	// Tags are templates of tag names the cached key joins ("org:{org_id}");
	// placeholders are result columns. A row whose tag column is NULL does not
	// join that tag.
	Tags []string `yaml:"tags,omitempty"`
}

// DemoCaches returns the cache of the demo users table (dev mode and the
// example configuration): user:{id} hashes with id, email and name, as in the
// FastAPI guide.
func DemoCaches() map[string]CacheSpec {
	return map[string]CacheSpec{
		"user": {
			Key:   "user:{id}",
			TTL:   time.Hour,
			ByIDs: "SELECT id, email, full_name AS name FROM users WHERE id IN (?)",
			All:   "SELECT id, email, full_name AS name FROM users WHERE id > ? ORDER BY id LIMIT ?",
		},
	}
}

// WarmConfig tunes warming.
//
// Coalescing uses asynq's group aggregation: single-id warms of one cache
// wait in the group "cache:<name>", and every asynq server of the worker
// checks its groups once per CoalesceGracePeriod (at most every 7s). A check
// turns up to CoalesceMaxSize waiting warms into one batched task when the
// group holds at least CoalesceMaxSize, or its newest warm is older than the
// grace period, or its oldest is older than CoalesceMaxDelay (asynq compares
// these in whole seconds). One check makes at most one batch per group, so a
// worker coalesces at most servers x CoalesceMaxSize ids per grace period.
type WarmConfig struct {
	// ChunkSize is how many ids one SQL query and one Redis pipeline carry.
	ChunkSize int `yaml:"chunk_size"`
	// PageSize is the keyset page size of warm_all.
	PageSize int `yaml:"page_size"`
	// MaxKeysPerSecond caps warm_all writes (0: no cap).
	MaxKeysPerSecond int `yaml:"max_keys_per_second"`
	// CoalesceGracePeriod is how long single-id warms wait for company.
	CoalesceGracePeriod time.Duration `yaml:"coalesce_grace_period"`
	// CoalesceMaxDelay bounds how long a single-id warm may wait in total.
	CoalesceMaxDelay time.Duration `yaml:"coalesce_max_delay"`
	// CoalesceMaxSize flushes a batch once it holds this many warms.
	CoalesceMaxSize int `yaml:"coalesce_max_size"`
}

func (w *WarmConfig) setDefaults() {
	w.ChunkSize = 500
	w.PageSize = 2000
	w.CoalesceGracePeriod = time.Second
	w.CoalesceMaxDelay = 5 * time.Second
	w.CoalesceMaxSize = 5000
}

func (w *WarmConfig) validate() error {
	if w.ChunkSize < 1 || w.ChunkSize > 100000 {
		return fmt.Errorf("warm.chunk_size must be between 1 and 100000, got %d", w.ChunkSize)
	}
	if w.PageSize < 1 || w.PageSize > 100000 {
		return fmt.Errorf("warm.page_size must be between 1 and 100000, got %d", w.PageSize)
	}
	if w.MaxKeysPerSecond < 0 {
		return fmt.Errorf("warm.max_keys_per_second must be 0 (no cap) or positive, got %d", w.MaxKeysPerSecond)
	}
	if w.CoalesceGracePeriod < time.Second {
		return fmt.Errorf("warm.coalesce_grace_period must be at least 1s (asynq's minimum), got %s", w.CoalesceGracePeriod)
	}
	if w.CoalesceMaxDelay < w.CoalesceGracePeriod {
		return fmt.Errorf("warm.coalesce_max_delay (%s) must be at least warm.coalesce_grace_period (%s)", w.CoalesceMaxDelay, w.CoalesceGracePeriod)
	}
	if w.CoalesceMaxSize < 1 {
		return fmt.Errorf("warm.coalesce_max_size must be at least 1, got %d", w.CoalesceMaxSize)
	}
	return nil
}

// FenceConfig tunes the per-key fences that keep warms from writing stale data.
type FenceConfig struct {
	// TTL is how long a fence outlives its invalidation. A warm whose database
	// read began longer ago than this is not written.
	TTL time.Duration `yaml:"ttl"`
}

func (f *FenceConfig) setDefaults() { f.TTL = time.Hour }

func (f *FenceConfig) validate() error { return positive("fence.ttl", f.TTL) }

func (c *Config) validateCaches() error {
	names := make([]string, 0, len(c.Caches))
	for n := range c.Caches {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := c.Caches[name].validate(name); err != nil {
			return err
		}
	}
	return nil
}

func (s CacheSpec) validate(name string) error {
	if name == "" || strings.ContainsAny(name, " {}*?") {
		return fmt.Errorf("caches: name %q must be a plain word such as \"user\"", name)
	}
	if _, err := keys.ParseTemplate(s.Key); err != nil {
		return fmt.Errorf("caches.%s.key: %v", name, err)
	}
	if s.TTL <= 0 {
		return fmt.Errorf("caches.%s.ttl must be a positive duration such as 1h (a cached key never lives without a TTL)", name)
	}
	if s.ByIDs == "" {
		return fmt.Errorf("caches.%s.by_ids is required: a query such as \"SELECT id, email FROM users WHERE id IN (?)\"", name)
	}
	if strings.Count(s.ByIDs, "?") != 1 {
		return fmt.Errorf("caches.%s.by_ids must have exactly one ? bind parameter (for the id list), got %d", name, strings.Count(s.ByIDs, "?"))
	}
	if s.All != "" && strings.Count(s.All, "?") != 2 {
		return fmt.Errorf("caches.%s.all must have two ? bind parameters (last id, page size), got %d", name, strings.Count(s.All, "?"))
	}
	if s.AllStart != "" && s.All == "" {
		return fmt.Errorf("caches.%s.all_start is set but caches.%s.all is empty; give the keyset query or drop all_start", name, name)
	}
	if s.TTLJitter < 0 || s.TTLJitter >= 1 {
		return fmt.Errorf("caches.%s.ttl_jitter must be between 0%% and 99%%, got %v", name, float64(s.TTLJitter))
	}
	for i, t := range s.Tags {
		if _, err := keys.ParseTemplate(t); err != nil {
			return fmt.Errorf("caches.%s.tags[%d]: %v", name, i, err)
		}
	}
	return nil
}

// IDCol returns the id column name.
func (s CacheSpec) IDCol() string {
	if s.IDColumn == "" {
		return "id"
	}
	return s.IDColumn
}

// Percent is a fraction written as "10%" (or 0.1) in YAML.
type Percent float64

// UnmarshalYAML reads "10%" or 0.1.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	var v float64
	var err error
	if strings.HasSuffix(s, "%") {
		v, err = strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		v /= 100
	} else {
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || v < 0 || v >= 1 {
		return fmt.Errorf("line %d: %q is not a percentage between 0%% and 99%% (write \"10%%\")", n.Line, n.Value)
	}
	*p = Percent(v)
	return nil
}

// MarshalYAML writes "10%".
func (p Percent) MarshalYAML() (any, error) {
	return strconv.FormatFloat(float64(p)*100, 'f', -1, 64) + "%", nil
}
