package keys

import (
	"strings"
	"testing"
)

func TestSessionLayout(t *testing.T) {
	t.Parallel()
	l, err := NewSessionLayout("session:{token}", "user:{user_id}:sessions")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Session("abc"); got != "session:abc" {
		t.Errorf("Session = %q", got)
	}
	if tok, ok := l.Token("session:abc-_9"); !ok || tok != "abc-_9" {
		t.Errorf("Token = %q, %v", tok, ok)
	}
	if _, ok := l.Token("user:1"); ok {
		t.Error("Token matched a key of another layout")
	}
	if got := l.Index("42"); got != "user:42:sessions" {
		t.Errorf("Index = %q", got)
	}
	if id, ok := l.UserID("user:42:sessions"); !ok || id != "42" {
		t.Errorf("UserID = %q, %v", id, ok)
	}
	if l.SessionPattern() != "session:*" || l.IndexPattern() != "user:*:sessions" {
		t.Errorf("patterns = %q, %q", l.SessionPattern(), l.IndexPattern())
	}

	none, err := NewSessionLayout("s:{t}", "")
	if err != nil {
		t.Fatal(err)
	}
	if none.HasIndex() || none.Index("1") != "" || none.IndexPattern() != "" {
		t.Error("layout without index reports one")
	}
}

func TestParseSingleRejects(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a:{x}:{y}":    "must have one placeholder",
		"session":      "no placeholder",
		"session:{t":   "never closed",
		"rate:{c}:{c}": "",
	} {
		_, err := ParseSingle("rate_limits.key", in)
		if want == "" {
			if err != nil {
				t.Errorf("ParseSingle(%q) = %v, want ok", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "rate_limits.key: ") {
			t.Errorf("ParseSingle(%q) = %v, want error naming the field and containing %q", in, err, want)
		}
	}
}
