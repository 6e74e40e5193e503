package keys

import (
	"strings"
	"testing"
)

// FuzzTemplate: parsing never panics; a template renders keys it matches
// back; a template CheckTemplate accepts never renders an internal key.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"user:{id}", "{{x}}:{id}", "{id}", "user:{a}:{b}", "user:{", "a}}b{c}", "asynq:{id}", "cachekeeper:{id}", "u{id}*"} {
		f.Add(s, "42")
	}
	rule := NewRule("ck:", "jobs:inbox")
	f.Fuzz(func(t *testing.T, tpl, value string) {
		tm, err := ParseTemplate(tpl)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		key := tm.RenderOne(value)
		if rule.CheckTemplate("x", tm) == nil && rule.Internal(key) {
			t.Fatalf("template %q accepted but renders internal key %q", tpl, key)
		}
		// Match is unambiguous when the value holds none of the literals
		// (an earlier placeholder ends at the next literal).
		clean := value != ""
		for _, p := range tm.parts {
			if p.literal != "" && (strings.Contains(value, p.literal) || strings.Contains(p.literal, value)) {
				clean = false
			}
		}
		if clean && len(tm.Placeholders()) == 1 {
			if _, ok := tm.Match(key); !ok {
				t.Fatalf("template %q does not match its own key %q", tpl, key)
			}
		}
		_ = tm.Pattern()
	})
}

// FuzzPattern: a pattern CheckPattern accepts can still match internal
// keys only when its literal prefix is broader than every internal prefix;
// an internal literal prefix is always refused.
func FuzzPattern(f *testing.F) {
	for _, s := range []string{"asynq:*", `asynq\:*`, "a*", "*", "{cachekeeper:inbox}:dead", "ck:[a-z]*", `\`, "jobs:inbox"} {
		f.Add(s)
	}
	rule := NewRule("ck:", "jobs:inbox")
	f.Fuzz(func(t *testing.T, pattern string) {
		lit, whole := GlobPrefix(pattern)
		err := rule.CheckPattern(pattern)
		if rule.Internal(lit) && err == nil {
			t.Fatalf("pattern %q with internal literal %q (whole=%v) accepted", pattern, lit, whole)
		}
	})
}
