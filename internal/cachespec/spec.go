// Package cachespec compiles the cache specs of the configuration into
// readers that turn SQL rows into whole-hash cache writes.
//
// A Spec knows its key and tag templates, its TTL (with jitter) and its two
// queries: by_ids ("... WHERE id IN (?)", expanded with sqlx.In and rebound
// for the driver) and all ("... WHERE id > ? ORDER BY id LIMIT ?", keyset
// pages). Validate runs both queries once against the real database (binding
// NULL, so no row is read) and rejects a spec whose query fails or whose key or
// tag template names a column the query does not return.
//
// Every result column becomes a hash field; a NULL column is left out, so a
// written hash never holds a field the row does not have.
package cachespec

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// Spec is one compiled cache.
type Spec struct {
	name     string
	key      keys.Template
	tags     []keys.Template
	ttl      time.Duration
	jitter   time.Duration
	idCol    string
	byIDs    string
	all      string
	allStart string
	// booleans are columns rendered as true/false (config's booleans:).
	booleans []string
	// keyByID: the key template's only placeholder is the id column, so the
	// key of an id whose row is gone can be rendered (and deleted).
	keyByID bool
	// start is the value the first keyset page starts after (set by Validate).
	start any
	// validated is set once Validate has checked the spec against the database.
	validated bool
}

// Compile checks a spec's templates and queries for shape (not against the
// database: see Validate).
func Compile(name string, cs config.CacheSpec) (*Spec, error) {
	if name == "" {
		return nil, fmt.Errorf("cache spec: empty name")
	}
	key, err := keys.ParseTemplate(cs.Key)
	if err != nil {
		return nil, fmt.Errorf("cache %q: key: %w", name, err)
	}
	if cs.TTL <= 0 {
		return nil, fmt.Errorf("cache %q: ttl must be positive (a cached key never lives without a TTL)", name)
	}
	if cs.TTLJitter < 0 || cs.TTLJitter >= 1 {
		return nil, fmt.Errorf("cache %q: ttl_jitter must be between 0%% and 99%%", name)
	}
	if strings.Count(cs.ByIDs, "?") != 1 {
		return nil, fmt.Errorf("cache %q: by_ids must have exactly one ? (the id list), as in \"SELECT id, email FROM users WHERE id IN (?)\"", name)
	}
	if cs.All != "" && strings.Count(cs.All, "?") != 2 {
		return nil, fmt.Errorf("cache %q: all must have two ? (last id, page size), as in \"SELECT ... WHERE id > ? ORDER BY id LIMIT ?\"", name)
	}
	s := &Spec{
		name:     name,
		key:      key,
		ttl:      cs.TTL,
		jitter:   time.Duration(float64(cs.TTL) * float64(cs.TTLJitter)),
		idCol:    cs.IDCol(),
		byIDs:    cs.ByIDs,
		all:      cs.All,
		allStart: cs.AllStart,
		booleans: cs.Booleans,
	}
	for i, t := range cs.Tags {
		tpl, err := keys.ParseTemplate(t)
		if err != nil {
			return nil, fmt.Errorf("cache %q: tags[%d]: %w", name, i, err)
		}
		s.tags = append(s.tags, tpl)
	}
	ph := key.Placeholders()
	s.keyByID = true
	for _, p := range ph {
		if p != s.idCol {
			s.keyByID = false
		}
	}
	return s, nil
}

// CompileAll compiles every spec, in name order so that the first error is
// always the same one.
func CompileAll(specs map[string]config.CacheSpec) (map[string]*Spec, error) {
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string]*Spec, len(specs))
	for _, n := range names {
		s, err := Compile(n, specs[n])
		if err != nil {
			return nil, err
		}
		out[n] = s
	}
	return out, nil
}

// Name returns the cache name.
func (s *Spec) Name() string { return s.name }

// KeyTemplate returns the key template.
func (s *Spec) KeyTemplate() keys.Template { return s.key }

// IDColumn returns the column holding the id.
func (s *Spec) IDColumn() string { return s.idCol }

// HasAll reports whether the spec has a keyset query for whole-table warms.
func (s *Spec) HasAll() bool { return s.all != "" }

// HasTags reports whether keys of this cache join tag sets.
func (s *Spec) HasTags() bool { return len(s.tags) > 0 }

// MaxTTL is the longest TTL a key of this cache gets (jitter only shortens).
// Tag sets live at least this long.
func (s *Spec) MaxTTL() time.Duration { return s.ttl }

// TTL returns a key's TTL: the spec's TTL made up to TTLJitter shorter at
// random, so that keys written together do not expire together.
func (s *Spec) TTL() time.Duration {
	if s.jitter <= 0 {
		return s.ttl
	}
	return s.ttl - time.Duration(rand.Int64N(int64(s.jitter)+1))
}

// KeyForID renders the key of an id when the key template names only the id
// column ("user:{id}"); false otherwise.
func (s *Spec) KeyForID(id string) (string, bool) {
	if !s.keyByID {
		return "", false
	}
	return s.key.RenderOne(id), true
}

// Dedupe returns ids without repeats, in first-seen order.
func Dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}

// Chunks cuts ids into slices of at most size.
func Chunks(ids []string, size int) [][]string {
	if size < 1 {
		size = 1
	}
	var out [][]string
	for len(ids) > size {
		out = append(out, ids[:size])
		ids = ids[size:]
	}
	if len(ids) > 0 {
		out = append(out, ids)
	}
	return out
}
