package keys

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRuleInternal(t *testing.T) {
	t.Parallel()
	r := NewRule("ck:", "jobs:inbox")
	for key, want := range map[string]bool{
		"asynq:{default}:scheduled":  true,
		"asynq:queues":               true,
		"{asynq:x}":                  true,
		"cachekeeper:fence:{user:1}": true, // the default prefix is always protected
		"{cachekeeper:inbox}:dead":   true,
		"ck:tag:org:1":               true,
		"{ck:inbox}:processing":      true,
		"jobs:inbox":                 true,
		"{jobs:inbox}:dead":          true,
		"{jobs:inbox}:processing":    true,
		"jobs:inbox2":                false,
		"user:1":                     false,
		"asynq":                      false,
		"ASYNQ:queues":               false,
		"cachekeeper":                false,
		"session:{cachekeeper:x}":    false,
		"":                           false,
	} {
		if got := r.Internal(key); got != want {
			t.Errorf("Internal(%q) = %v, want %v", key, got, want)
		}
	}
	var zero Rule
	if !zero.Internal("asynq:queues") || !zero.Internal("cachekeeper:x") || zero.Internal("ck:x") {
		t.Error("the zero Rule is not DefaultRule")
	}
}

func TestRuleSplit(t *testing.T) {
	t.Parallel()
	r := DefaultRule()
	in := []string{"a", "asynq:queues", "b", "cachekeeper:x", "c"}
	out, n := r.Split(in)
	if n != 2 || strings.Join(out, ",") != "a,b,c" {
		t.Fatalf("Split = %v, %d", out, n)
	}
	if in[1] != "asynq:queues" {
		t.Fatal("Split changed its input")
	}
	clean := []string{"a", "b"}
	if out, n := r.Split(clean); n != 0 || &out[0] != &clean[0] {
		t.Fatal("Split copied a list with nothing to leave out")
	}
}

func TestRuleCheckPattern(t *testing.T) {
	t.Parallel()
	r := NewRule("ck:")
	for pattern, refused := range map[string]bool{
		"asynq:*":              true,
		"asynq:{default}:*":    true,
		`asynq\:*`:             true,
		"asynq:queues":         true,
		"cachekeeper:*":        true,
		"{cachekeeper:inbox}*": true,
		"ck:tag:*":             true,
		"asy*":                 false, // broad: the scan skips asynq's keys
		"a*":                   false,
		"*":                    false,
		"user:*":               false,
		"[a]synq:*":            false,
		"cachekeeper*":         false,
		"session:*":            false,
	} {
		err := r.CheckPattern(pattern)
		if (err != nil) != refused {
			t.Errorf("CheckPattern(%q) = %v, want refused=%v", pattern, err, refused)
		}
		if err != nil && !errors.Is(err, ErrInternalKey) {
			t.Errorf("CheckPattern(%q) error %v does not wrap ErrInternalKey", pattern, err)
		}
	}
}

func TestRuleCheckTemplate(t *testing.T) {
	t.Parallel()
	r := NewRule("cachekeeper:", "jobs:inbox")
	for tpl, refused := range map[string]bool{
		"user:{id}":              false,
		"{{user}}:{id}":          false,
		"session:{token}":        false,
		"cachekeeper:user:{id}":  true,
		"asynq:{id}":             true,
		"{id}":                   true, // id "asynq:queues" would render asynq's key
		"asy{id}":                true,
		"cache{id}":              true,
		"jobs:{id}":              true, // id "inbox"
		"{{cachekeeper:x}}:{id}": true,
	} {
		err := r.CheckTemplate("caches.x.key", MustParseTemplate(tpl))
		if (err != nil) != refused {
			t.Errorf("CheckTemplate(%q) = %v, want refused=%v", tpl, err, refused)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "caches.x.key: ") {
			t.Errorf("CheckTemplate(%q) error %q does not name the setting", tpl, err)
		}
	}
}

func TestGlobPrefix(t *testing.T) {
	t.Parallel()
	type want struct {
		lit   string
		whole bool
	}
	for in, w := range map[string]want{"user:*": {"user:", false}, `a\*b`: {"a*b", true}, "x": {"x", true},
		"": {"", true}, `tail\`: {"tail", true}, "a?b": {"a", false}, "[x]": {"", false}} {
		lit, whole := GlobPrefix(in)
		if lit != w.lit || whole != w.whole {
			t.Errorf("GlobPrefix(%q) = %q, %v; want %q, %v", in, lit, whole, w.lit, w.whole)
		}
	}
}

func TestGuardContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if GuardFrom(ctx) != nil || RuleFrom(ctx).Internal("ck:x") {
		t.Fatal("a context without guard has one")
	}
	var nilGuard *Guard
	nilGuard.Skip(3) // no guard: counting is a no-op
	g := &Guard{Rule: NewRule("ck:")}
	ctx = WithGuard(ctx, g)
	GuardFrom(ctx).Skip(2)
	GuardFrom(ctx).Skip(0)
	if g.Skipped() != 2 || !RuleFrom(ctx).Internal("ck:x") {
		t.Fatalf("guard: skipped %d", g.Skipped())
	}
}
