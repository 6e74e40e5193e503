package fence

import "testing"

func TestSlot(t *testing.T) {
	t.Parallel()
	// Reference values from the Redis Cluster specification and CLUSTER KEYSLOT.
	cases := map[string]int{"123456789": 12739, "foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443, "": 0}
	for k, want := range cases {
		if got := slot(k); got != want {
			t.Errorf("slot(%q) = %d, want %d", k, got, want)
		}
	}
}
