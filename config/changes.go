package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"gopkg.in/yaml.v3"
)

// Actions of a change source: what a changed row does to its cached key.
const (
	// ChangeInvalidate deletes the key (fenced), so the next read misses.
	ChangeInvalidate = "invalidate"
	// ChangeRewarm deletes the key (fenced) and enqueues a warm of the id.
	ChangeRewarm = "rewarm"
)

// ChangeSource maps the row changes of one table, read from the database's
// own change stream by `cachekeeper changes`, to the keys of a cache:
//
//	changes: {table: users, id: id, action: invalidate}
//
// or, for a cache built from a join, a list:
//
//	changes:
//	  - {table: users, id: id}
//	  - {table: public.memberships, tags: ["org:{org_id}"]}
//
// INSERT and DELETE invalidate the row's id; UPDATE invalidates the new id and,
// when the id column changed, the old one; TRUNCATE invalidates the whole
// cache by pattern. Ids are the columns' text form, as a warm renders them.
type ChangeSource struct {
	// Table is the changed table, optionally schema-qualified ("app.users");
	// unqualified names resolve through the database connection's search path
	// (PostgreSQL) or its database (MySQL).
	Table string `yaml:"table"`
	// ID is the column of Table whose value is the cache id (the {id} of the
	// key). Give ID, Tags or both.
	ID string `yaml:"id,omitempty"`
	// Tags are tag templates whose placeholders are columns of Table
	// ("org:{org_id}"): a change invalidates every key carrying the rendered
	// tag (the cache's own tags: section makes warms join them).
	Tags []string `yaml:"tags,omitempty"`
	// Action is invalidate (default) or rewarm. Rewarm needs ID.
	Action string `yaml:"action,omitempty"`
}

// ChangeSources is the changes: block of a cache spec; YAML accepts one
// mapping or a list of them.
type ChangeSources []ChangeSource

// UnmarshalYAML reads a single {table: ...} mapping or a sequence of them.
func (s *ChangeSources) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var one ChangeSource
		if err := n.Decode(&one); err != nil {
			return err
		}
		*s = ChangeSources{one}
		return nil
	}
	var many []ChangeSource
	if err := n.Decode(&many); err != nil {
		return err
	}
	*s = many
	return nil
}

// ActionOrDefault returns Action, or ChangeInvalidate when empty.
func (c ChangeSource) ActionOrDefault() string {
	if c.Action == "" {
		return ChangeInvalidate
	}
	return c.Action
}

// SplitTable returns the schema (empty when unqualified) and the table name.
func (c ChangeSource) SplitTable() (schema, table string) {
	if s, t, ok := strings.Cut(c.Table, "."); ok {
		return s, t
	}
	return "", c.Table
}

func (s ChangeSources) validate(cache string) error {
	seen := map[string]bool{}
	for i, c := range s {
		at := fmt.Sprintf("caches.%s.changes[%d]", cache, i)
		if err := checkTableName(c.Table); err != nil {
			return fmt.Errorf("%s.table: %v", at, err)
		}
		if c.ID == "" && len(c.Tags) == 0 {
			return fmt.Errorf("%s: give id (the column holding the cache id) or tags (templates such as \"org:{org_id}\")", at)
		}
		if c.ID != "" && !identifier(c.ID) {
			return fmt.Errorf("%s.id %q must be a column name (letters, digits, _)", at, c.ID)
		}
		for j, tag := range c.Tags {
			tpl, err := keys.ParseTemplate(tag)
			if err != nil {
				return fmt.Errorf("%s.tags[%d]: %v", at, j, err)
			}
			for _, p := range tpl.Placeholders() {
				if !identifier(p) {
					return fmt.Errorf("%s.tags[%d]: placeholder {%s} must be a column name", at, j, p)
				}
			}
		}
		switch c.ActionOrDefault() {
		case ChangeInvalidate:
		case ChangeRewarm:
			if c.ID == "" {
				return fmt.Errorf("%s.action rewarm needs id: tags do not name the ids to warm", at)
			}
		default:
			return fmt.Errorf("%s.action %q must be invalidate or rewarm", at, c.Action)
		}
		if seen[c.Table] {
			return fmt.Errorf("%s.table %q is listed twice for cache %s; put its id and tags in one entry", at, c.Table, cache)
		}
		seen[c.Table] = true
	}
	return nil
}

func checkTableName(t string) error {
	if t == "" {
		return errors.New("is required (the table whose row changes invalidate this cache, e.g. users or app.users)")
	}
	parts := strings.Split(t, ".")
	if len(parts) > 2 {
		return fmt.Errorf("%q must be table or schema.table", t)
	}
	for _, p := range parts {
		if !identifier(p) {
			return fmt.Errorf("%q must be table or schema.table made of letters, digits and _", t)
		}
	}
	return nil
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// HasChanges reports whether any cache declares a changes: block.
func (c *Config) HasChanges() bool {
	for _, s := range c.Caches {
		if len(s.Changes) > 0 {
			return true
		}
	}
	return false
}

// ErrNoChangeStream says the database has no change stream to follow.
var ErrNoChangeStream = errors.New("SQLite has no change stream: `cachekeeper changes` follows PostgreSQL logical replication or the MySQL/MariaDB binlog; with SQLite invalidate from the application (tasks.Client or the inbox)")

// CheckChangeStream returns ErrNoChangeStream when caches declare changes:
// blocks but the database is SQLite, which has no commit log to follow.
func (c *Config) CheckChangeStream() error {
	if !c.HasChanges() {
		return nil
	}
	if kind, err := c.Database.DriverName(); err == nil && kind == "sqlite" {
		return ErrNoChangeStream
	}
	return nil
}
