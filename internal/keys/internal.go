package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// ErrInternalKey is wrapped by every refusal of the internal-key rule.
var ErrInternalKey = errors.New("internal key")

// Rule says which Redis keys belong to cachekeeper or to the asynq queue
// rather than to the application. No job may delete, expire or rewrite one:
// producers are refused at enqueue time where the rule is known, handlers
// skip such keys (and count them), scans never deliver them.
//
// A key is internal when it
//
//   - starts with the key prefix ("cachekeeper:fence:{user:42}") or with
//     the prefix inside a hash tag ("{cachekeeper:inbox}:dead"), for the
//     configured prefix and always for DefaultPrefix;
//   - starts with "asynq:" (asynq has no configurable prefix: every queue
//     key, "asynq:{default}:scheduled", and "asynq:queues" are under it), or
//     with "{asynq:";
//   - is one of the owned keys given to NewRule (an inbox list outside the
//     prefix, "jobs:inbox"), or one of the keys built from them with
//     SameSlot ("{jobs:inbox}:processing", "{jobs:inbox}:dead").
//
// The zero Rule is DefaultRule.
type Rule struct {
	prefixes []string
	exact    []string
}

// DefaultRule protects DefaultPrefix and asynq's keys: what every producer
// refuses even when it does not know the workers' configuration.
func DefaultRule() Rule { return NewRule("") }

// NewRule protects prefix (DefaultPrefix when empty) as well as
// DefaultPrefix and asynq's keys, and the owned keys (and their SameSlot
// forms).
func NewRule(prefix string, owned ...string) Rule {
	r := Rule{}
	add := func(p string) {
		for _, have := range r.prefixes {
			if have == p {
				return
			}
		}
		r.prefixes = append(r.prefixes, p)
	}
	for _, p := range []string{DefaultPrefix, prefix, AsynqPrefix} {
		if p == "" {
			continue
		}
		add(p)
		add("{" + p)
	}
	for _, k := range owned {
		if k == "" || r.Internal(k) {
			continue
		}
		r.exact = append(r.exact, k)
		add(SameSlot(k) + ":")
	}
	return r
}

func (r Rule) list() []string {
	if r.prefixes == nil {
		return DefaultRule().prefixes
	}
	return r.prefixes
}

// Internal reports whether key is internal.
func (r Rule) Internal(key string) bool {
	for _, p := range r.list() {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	for _, k := range r.exact {
		if key == k {
			return true
		}
	}
	return false
}

// Split returns the keys of list that are not internal, in order, and how
// many were left out. The slice is list itself when nothing is left out.
func (r Rule) Split(list []string) ([]string, int) {
	for i, k := range list {
		if !r.Internal(k) {
			continue
		}
		out := append(make([]string, 0, len(list)-1), list[:i]...)
		skipped := 1
		for _, k := range list[i+1:] {
			if r.Internal(k) {
				skipped++
			} else {
				out = append(out, k)
			}
		}
		return out, skipped
	}
	return list, 0
}

// CheckKey refuses an internal key, saying whose it is.
func (r Rule) CheckKey(key string) error {
	if !r.Internal(key) {
		return nil
	}
	return fmt.Errorf("%w: %q belongs to %s; jobs never delete, expire or rewrite it", ErrInternalKey, key, r.owner(key))
}

func (r Rule) owner(key string) string {
	if strings.HasPrefix(key, AsynqPrefix) || strings.HasPrefix(key, "{"+AsynqPrefix) {
		return "the asynq queue"
	}
	return "cachekeeper itself"
}

// CheckPattern refuses a SCAN MATCH glob that can only match internal keys:
// one whose literal prefix (the text before the first unescaped '*', '?' or
// '[') is itself internal, such as "asynq:*" or "{cachekeeper:inbox}*". A
// broader pattern ("a*") is accepted; the scan skips the internal keys it
// meets (see package scan).
func (r Rule) CheckPattern(pattern string) error {
	lit, whole := GlobPrefix(pattern)
	if whole {
		return r.CheckKey(lit)
	}
	if r.Internal(lit) {
		return fmt.Errorf("%w: pattern %q only matches keys of %s (they start with %q); jobs never delete, expire or rewrite them", ErrInternalKey, pattern, r.owner(lit), lit)
	}
	return nil
}

// CheckTemplate refuses a key template that can render an internal key for
// some value of its placeholders: its literal text before the first
// placeholder and an internal prefix must not be prefixes of one another
// ("cachekeeper:user:{id}", "asynq:{id}" and "{id}" are refused; "user:{id}"
// is fine). what names the setting, for example "caches.user.key".
func (r Rule) CheckTemplate(what string, t Template) error {
	lead := ""
	if len(t.parts) > 0 && t.parts[0].name == "" {
		lead = t.parts[0].literal
	}
	for _, p := range r.list() {
		if strings.HasPrefix(lead, p) || strings.HasPrefix(p, lead) {
			return fmt.Errorf("%s: %w: key template %q can render keys starting with %q, which belong to %s; start it with a prefix of your own such as \"user:\"",
				what, ErrInternalKey, t.raw, p, r.owner(p))
		}
	}
	for _, k := range r.exact {
		if strings.HasPrefix(k, lead) {
			return fmt.Errorf("%s: %w: key template %q can render %q, which belongs to cachekeeper itself", what, ErrInternalKey, t.raw, k)
		}
	}
	return nil
}

// GlobPrefix returns the literal text a Redis glob pattern starts with (its
// escapes resolved) and whether that is the whole pattern (a pattern without
// wildcards matches one key).
func GlobPrefix(pattern string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*', '?', '[':
			return b.String(), false
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteByte(pattern[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// Guard carries the rule a job runs under and counts the internal keys it
// skipped. The worker puts one in each job's context (WithGuard); the
// layers that touch keys (package scan, package invalidate) consult it.
type Guard struct {
	Rule    Rule
	skipped atomic.Int64
}

// Skip counts n internal keys left alone.
func (g *Guard) Skip(n int) {
	if g != nil && n > 0 {
		g.skipped.Add(int64(n))
	}
}

// Skipped is how many internal keys were left alone so far.
func (g *Guard) Skipped() int64 {
	if g == nil {
		return 0
	}
	return g.skipped.Load()
}

type guardKey struct{}

// WithGuard returns ctx carrying g.
func WithGuard(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, guardKey{}, g)
}

// GuardFrom returns the guard of ctx, or nil.
func GuardFrom(ctx context.Context) *Guard {
	g, _ := ctx.Value(guardKey{}).(*Guard)
	return g
}

// RuleFrom returns the rule of ctx's guard, or DefaultRule.
func RuleFrom(ctx context.Context) Rule {
	if g := GuardFrom(ctx); g != nil {
		return g.Rule
	}
	return DefaultRule()
}
