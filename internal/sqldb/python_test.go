package sqldb_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// The Python package's lease fills write values as the worker does: the
// same text for the same value, so a key filled by a Python application
// and one warmed by the worker hold the same bytes.
func TestPythonRendersValuesAsTheWorker(t *testing.T) {
	t.Parallel()
	cet := time.FixedZone("CET", 3600)
	floats := []float64{1, 1.5, 0.1, 1e21, 1.5e-7, 123456789.125, -2.75, 1.0 / 3}
	ints := []int64{0, -7, 9007199254740993}
	times := []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 250000000, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 123456000, cet),
	}
	var want []string
	for _, f := range floats {
		s, _ := sqldb.Format(f)
		want = append(want, s)
	}
	for _, n := range ints {
		s, _ := sqldb.Format(n)
		want = append(want, s)
	}
	for _, b := range []bool{true, false} {
		s, _ := sqldb.Format(b)
		want = append(want, s)
	}
	var pyTimes [][]int
	for _, tm := range times {
		s, _ := sqldb.Format(tm)
		want = append(want, s)
		_, off := tm.Zone()
		pyTimes = append(pyTimes, []int{tm.Year(), int(tm.Month()), tm.Day(), tm.Hour(), tm.Minute(), tm.Second(), tm.Nanosecond() / 1000, off})
	}
	in, _ := json.Marshal(map[string]any{"floats": floats, "ints": ints, "times": pyTimes})
	out := testenv.RunPython(t, `
import datetime, json, sys
from cachekeeper import render
a = json.load(sys.stdin)
vals = [float(f) for f in a["floats"]] + [int(n) for n in a["ints"]] + [True, False]
for y, mo, d, h, mi, s, us, off in a["times"]:
    vals.append(datetime.datetime(y, mo, d, h, mi, s, us, tzinfo=datetime.timezone(datetime.timedelta(seconds=off))))
print(json.dumps([render(v) for v in vals]))
`, in)
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("python rendered %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d: python %q, Go %q", i, got[i], want[i])
		}
	}
}
