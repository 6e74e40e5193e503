package keys

import "testing"

func TestTagKeysShareTheTagSlot(t *testing.T) {
	k := Default()
	for _, tag := range []string{"org:7", "org:{7}", "a b"} {
		set := k.Tag(tag)
		want, _ := HashTag(SameSlot(set))
		for _, other := range []string{k.TagHold(tag, "job1"), k.TagFence(tag)} {
			got, ok := HashTag(other)
			if !ok || got != want {
				t.Errorf("tag %q: %q has hash tag %q, want %q (same slot as %q)", tag, other, got, want, set)
			}
		}
	}
}

func TestInternal(t *testing.T) {
	k := Default()
	for key, want := range map[string]bool{
		"cachekeeper:fence:{user:1}":     true,
		"{cachekeeper:inbox}:processing": true,
		"asynq:{default}:pending":        true,
		"user:1":                         false,
		"cachekeeperx":                   false,
		"{user:1}:x":                     false,
	} {
		if got := k.Internal(key); got != want {
			t.Errorf("Internal(%q) = %v, want %v", key, got, want)
		}
	}
}
