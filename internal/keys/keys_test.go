package keys

import (
	"testing"

	"github.com/cachekeeper/cachekeeper/events"
)

func TestSameSlotAndFence(t *testing.T) {
	t.Parallel()
	cases := []struct{ key, fence string }{
		{"user:42", "cachekeeper:fence:{user:42}"},
		{"{user}:42", "cachekeeper:fence:{user}:42"},
		{"a{b}c", "cachekeeper:fence:a{b}c"},
	}
	for _, c := range cases {
		if got := Default().Fence(c.key); got != c.fence {
			t.Errorf("Fence(%q) = %q, want %q", c.key, got, c.fence)
		}
		tagKey, _ := HashTag(c.key)
		if tagKey == "" {
			tagKey = c.key
		}
		tagFence, ok := HashTag(c.fence)
		if !ok || tagFence != tagKey {
			t.Errorf("fence %q hashes %q, key %q hashes %q", c.fence, tagFence, c.key, tagKey)
		}
	}
	if got := Processing("cachekeeper:inbox"); got != "{cachekeeper:inbox}:processing" {
		t.Errorf("Processing = %q", got)
	}
}

func TestNewRejectsBadPrefix(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"a{b", "x*", "has space"} {
		if _, err := New(p); err == nil {
			t.Errorf("New(%q) accepted", p)
		}
	}
	k, err := New("")
	if err != nil || k.Prefix() != DefaultPrefix {
		t.Fatalf("New(\"\") = %v, %v", k, err)
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	tpl, err := ParseTemplate("user:{user_id}:sessions")
	if err != nil {
		t.Fatal(err)
	}
	if got := tpl.RenderOne("7"); got != "user:7:sessions" {
		t.Errorf("RenderOne = %q", got)
	}
	if got := tpl.Pattern(); got != "user:*:sessions" {
		t.Errorf("Pattern = %q", got)
	}
	m, ok := tpl.Match("user:7:sessions")
	if !ok || m["user_id"] != "7" {
		t.Errorf("Match = %v %v", m, ok)
	}
	if _, ok := tpl.Match("user:7:other"); ok {
		t.Error("Match accepted a key of another shape")
	}
	s, _ := ParseTemplate("session:{token}")
	if m, ok := s.Match("session:a:b"); !ok || m["token"] != "a:b" {
		t.Errorf("trailing placeholder Match = %v %v", m, ok)
	}
	if _, err := tpl.RenderMap(map[string]string{}); err == nil {
		t.Error("RenderMap with a missing value succeeded")
	}
	lit, err := ParseTemplate("{{x}}:{id}")
	if err != nil || lit.RenderOne("1") != "{x}:1" {
		t.Errorf("literal braces: %v %q", err, lit.RenderOne("1"))
	}
}

func TestParseTemplateErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"user:", "user:{id", "user:id}", "user:{}", "user:{a b}", "user:*:{id}"} {
		if _, err := ParseTemplate(s); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", s)
		}
	}
}

func TestCheckCacheName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{"user": true, "user_v2": true, "org.members": true,
		"": false, " ": false, "us er": false, "us{er}": false, "u*": false, "u?": false, "u[1]": false} {
		if err := CheckCacheName(name); (err == nil) != ok {
			t.Errorf("CheckCacheName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestWarmKeysShareASlot(t *testing.T) {
	t.Parallel()
	k := Default()
	want := "cachekeeper:warm:{user}:pending"
	if got := k.WarmPending("user"); got != want {
		t.Errorf("WarmPending = %q, want %q", got, want)
	}
	for _, key := range []string{k.WarmPending("user"), k.WarmSeq("user"), k.WarmDrain("user"), k.WarmServed("user")} {
		if tag, ok := HashTag(key); !ok || tag != "user" {
			t.Errorf("%q hashes %q, want the cache name", key, tag)
		}
		if !k.Internal(key) {
			t.Errorf("%q is not recognised as cachekeeper's own key", key)
		}
	}
}

// The public events package spells the default channel as a constant; it
// must stay the channel this package names.
func TestEventsDefaultChannel(t *testing.T) {
	if got, want := events.DefaultChannel, Default().EventsChannel(); got != want {
		t.Fatalf("events.DefaultChannel = %q, keys.Default().EventsChannel() = %q", got, want)
	}
}

// FencesOf matches the fence of every key with the prefix, and no other.
func TestFencesOf(t *testing.T) {
	t.Parallel()
	k := Default()
	pattern := k.FencesOf("ckbench:inv:")
	if pattern != "cachekeeper:fence:{ckbench:inv:*" {
		t.Fatalf("FencesOf = %q", pattern)
	}
	lit, whole := GlobPrefix(pattern)
	for key, want := range map[string]bool{"ckbench:inv:1": true, "ckbench:inv:": true, "ckbench:other": false, "user:1": false} {
		fence := k.Fence(key)
		if got := !whole && len(fence) >= len(lit) && fence[:len(lit)] == lit; got != want {
			t.Errorf("fence %q of %q matched by %q: %v, want %v", fence, key, pattern, got, want)
		}
	}
}

// TestMayMatchGlob: a template and a glob that share a key are never
// reported apart; ones whose literal prefixes differ are.
func TestMayMatchGlob(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tpl, glob string
		want      bool
	}{
		{"user:{id}", "user:*", true},
		{"user:{id}", "user:1*", true},
		{"user:{id}", "us*", true},
		{"user:{id}", "*", true},
		{"user:{id}", "*:1", true},
		{"user:{id}", "user:42", true},
		{"user:{id}", "user:", false},
		{"user:{id}", "session:*", false},
		{"user:{id}", "users:*", false},
		{"user:{id}", "user-avatar:*", false},
		{"{org}:user:{id}", "acme:user:*", true},
		{"user:{id}:profile", "user:7:settings", false},
		{"user:{id}:profile", "user:7:profile", true},
		{"user:{id}", `user\*:*`, false},
	} {
		tpl, err := ParseTemplate(tc.tpl)
		if err != nil {
			t.Fatal(err)
		}
		if got := tpl.MayMatchGlob(tc.glob); got != tc.want {
			t.Errorf("%q.MayMatchGlob(%q) = %v, want %v", tc.tpl, tc.glob, got, tc.want)
		}
	}
}
