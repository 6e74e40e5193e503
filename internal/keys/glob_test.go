package keys

import "testing"

func TestGlobMatchLikeRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"rate_limit:*", "rate_limit:login:x", true},
		{"rate_limit:login:*", "rate_limit:x", false},
		{"rate_limit:login:*", "rate_limit:login:1.2.3.4", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a[bc]d", "acd", true},
		{"a[^bc]d", "acd", false},
		{"a[a-c]d", "abd", true},
		{"a\\*b", "a*b", true},
		{"a\\*b", "axb", false},
		{"*:*", "user/1:2", true}, // '/' is an ordinary byte
		{"**x", "yyx", true},
		{"", "", true},
		{"x", "", false},
	} {
		if got := GlobMatch(tc.pattern, tc.key); got != tc.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}
