package config

import (
	"errors"
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
	// Booleans are result columns written as true/false whatever their SQL
	// type. PostgreSQL and SQLite booleans need no entry; MySQL and MariaDB
	// have no boolean type (BOOLEAN is TINYINT(1), which their protocol
	// reports as TINYINT), so list such columns here.
	Booleans []string `yaml:"booleans,omitempty"`
	// Changes maps row changes read from the database's change stream
	// (`cachekeeper changes`) to this cache's keys; see ChangeSource.
	Changes ChangeSources `yaml:"changes,omitempty"`
	// RefreshAhead rewarms keys that are being read before they expire.
	RefreshAhead RefreshAhead `yaml:"refresh_ahead,omitempty"`
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
// Coalescing: tasks.Client.WarmCache (and cache:warm entries without options
// from the inbox) add ids to the cache's pending set in Redis instead of
// enqueueing a job each. Every CoalesceInterval the worker takes the pending
// ids of each of its caches, oldest request first, and enqueues them on
// CoalesceQueue as cache:warm jobs of up to CoalesceMaxSize ids, until the
// set is empty (or 100 jobs went; the rest waits for the next pass). An id
// asked for many times meanwhile is read once per job.
type WarmConfig struct {
	// ChunkSize is how many ids one SQL query and one Redis pipeline carry.
	ChunkSize int `yaml:"chunk_size"`
	// PageSize is the keyset page size of warm_all.
	PageSize int `yaml:"page_size"`
	// MaxKeysPerSecond caps warm_all writes (0: no cap).
	MaxKeysPerSecond int `yaml:"max_keys_per_second"`
	// CoalesceInterval is how often the worker takes the pending ids: how
	// long a WarmCache call waits for company before its job is enqueued
	// (longer when another worker of the fleet holds the cache's lease and
	// stopped without releasing it: up to its 30s).
	// An idle worker costs Redis one short script call per cache per
	// interval for it.
	CoalesceInterval time.Duration `yaml:"coalesce_interval"`
	// CoalesceMaxSize is the most ids one coalesced cache:warm job carries.
	CoalesceMaxSize int `yaml:"coalesce_max_size"`
	// CoalesceQueue is the queue of coalesced jobs; one of worker.queues.
	CoalesceQueue string `yaml:"coalesce_queue"`
}

func (w *WarmConfig) setDefaults() {
	w.ChunkSize = 500
	w.PageSize = 2000
	w.CoalesceInterval = 500 * time.Millisecond
	w.CoalesceMaxSize = 5000
	w.CoalesceQueue = "default"
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
	if w.CoalesceInterval < 10*time.Millisecond || w.CoalesceInterval > time.Minute {
		return fmt.Errorf("warm.coalesce_interval must be between 10ms and 1m, got %s", w.CoalesceInterval)
	}
	if w.CoalesceMaxSize < 1 || w.CoalesceMaxSize > 100000 {
		return fmt.Errorf("warm.coalesce_max_size must be between 1 and 100000, got %d", w.CoalesceMaxSize)
	}
	if w.CoalesceQueue == "" {
		return errors.New("warm.coalesce_queue must name a queue (default \"default\")")
	}
	return nil
}

// validateCoalesceQueue checks that the worker serves the queue coalesced
// warms go to, when it warms caches at all.
func (c *Config) validateCoalesceQueue() error {
	if len(c.Caches) == 0 {
		return nil
	}
	if _, ok := c.Worker.Queues[c.Warm.CoalesceQueue]; !ok {
		return fmt.Errorf("warm.coalesce_queue %q is not one of worker.queues (%s): add it there or pick one of them", c.Warm.CoalesceQueue, queueNames(c.Worker.Queues))
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
	if err := keys.CheckCacheName(name); err != nil {
		return fmt.Errorf("caches: %v", err)
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
	for i, b := range s.Booleans {
		if strings.TrimSpace(b) == "" {
			return fmt.Errorf("caches.%s.booleans[%d] is empty: name a result column, such as active", name, i)
		}
	}
	if err := s.RefreshAhead.validate(name, s.TTL); err != nil {
		return err
	}
	return s.Changes.validate(name)
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
