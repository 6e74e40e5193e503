package changes

import "testing"

func TestPGSnapshotVisible(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		snap string
		xid  uint32
		want bool
	}{
		{"100:105:", 99, true},          // before xmin: finished
		{"100:105:", 104, true},         // below xmax, not in progress
		{"100:105:100,103", 103, false}, // in progress
		{"100:105:100,103", 101, true},
		{"100:105:", 105, false}, // not finished when the snapshot was taken
		{"100:105:", 200, false},
		// 64-bit xids of epoch 1: the 32-bit xid is widened near xmax.
		{"4294967396:4294967401:4294967398", 100, true},
		{"4294967396:4294967401:4294967398", 102, false},
		{"4294967396:4294967401:", 4294967295, true}, // epoch 0's last xid
		{"4294967290:4294967310:4294967295", 4294967295, false},
		{"4294967290:4294967310:4294967295", 2, true}, // epoch 1, xid 2 = 4294967298
	} {
		s, err := parsePGSnapshot(c.snap)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.visible(c.xid); got != c.want {
			t.Errorf("snapshot %s: xid %d visible = %v, want %v", c.snap, c.xid, got, c.want)
		}
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parsePGSnapshot(bad); err == nil {
			t.Errorf("parsePGSnapshot(%q) accepted", bad)
		}
	}
}
