package keys

import "testing"

func TestSlot(t *testing.T) {
	t.Parallel()
	// Reference values from the Redis Cluster specification and CLUSTER KEYSLOT.
	cases := map[string]int{"123456789": 12739, "foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443, "": 0}
	for k, want := range cases {
		if got := Slot(k); got != want {
			t.Errorf("Slot(%q) = %d, want %d", k, got, want)
		}
	}
	// An empty tag does not count: the whole key is hashed.
	if Slot("{}foo") == Slot("foo") {
		t.Error("empty hash tag treated as a tag")
	}
	// The first "{...}" decides: "foo{}{bar}" has an empty one, so the whole
	// key is hashed (8363, CRC16 of the whole key), not "bar" (5061).
	if got := Slot("foo{}{bar}"); got != 8363 {
		t.Errorf(`Slot("foo{}{bar}") = %d, want 8363 (the whole key hashed)`, got)
	}
	if Slot("a{b}c") != Slot("b") {
		t.Error("hash tag rules")
	}
}

// TestSlotTagCoversEverySlot: every slot has a tag, and a key holding it
// in braces hashes to that slot.
func TestSlotTagCoversEverySlot(t *testing.T) {
	t.Parallel()
	for s := 0; s < 16384; s++ {
		tag := SlotTag(s)
		if tag == "" || Slot("x:{"+tag+"}:y") != s {
			t.Fatalf("SlotTag(%d) = %q, which hashes to slot %d", s, tag, Slot("{"+tag+"}"))
		}
	}
	if k := Default().CacheFence("user", SlotTag(42)); Slot(k) != 42 {
		t.Fatalf("CacheFence for slot 42 = %q, in slot %d", k, Slot(k))
	}
}
