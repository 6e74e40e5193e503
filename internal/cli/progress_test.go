package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/worker"
)

func progressJSON(t *testing.T, p worker.WarmAllProgress) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWarmAllProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	onResult, done := warmAllProgress(IO{Stderr: &out, IsTerminal: true})
	onResult(progressJSON(t, worker.WarmAllProgress{Cache: "user", RowsDone: 250000, Total: 1000000, RowsPerS: 125000}))
	onResult(progressJSON(t, worker.WarmAllProgress{Cache: "user", RowsDone: 1000000, Total: 1000000, RowsPerS: 125000, ElapsedS: 8, Done: true}))
	done()
	got := out.String()
	for _, want := range []string{
		"\ruser [#######.......................]  25.0%  250,000/1,000,000 rows  125,000 rows/s  ETA 6s",
		"\ruser [##############################] 100.0%  1,000,000/1,000,000 rows  125,000 rows/s  done in 8s",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if !strings.HasSuffix(got, "\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("a terminal bar is redrawn in place and ends with one newline: %q", got)
	}
}

func TestWarmAllProgressPlainLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	clock := time.Unix(1000, 0)
	p := &progressView{out: &out, now: func() time.Time { return clock }}
	p.update(progressJSON(t, worker.WarmAllProgress{Cache: "user", RowsDone: 100, Total: 400, RowsPerS: 50, ResumedFrom: 40}))
	clock = clock.Add(time.Second) // too soon for another line
	p.update(progressJSON(t, worker.WarmAllProgress{Cache: "user", RowsDone: 150, Total: 400, RowsPerS: 50}))
	p.update(progressJSON(t, worker.WarmAllProgress{Cache: "user", RowsDone: 400, Total: 400, RowsPerS: 60, Done: true}))
	p.update([]byte(`{"not":"progress"}`))
	p.finish()
	want := "warm_all user: 100/400 rows (25.0%), 50 rows/s, resumed from 40\n" +
		"warm_all user: 400/400 rows (100.0%), 60 rows/s, done\n"
	if out.String() != want {
		t.Fatalf("plain progress =\n%q\nwant\n%q", out.String(), want)
	}
}

func TestProgressBarWithoutTotal(t *testing.T) {
	t.Parallel()
	got := progressBar(worker.WarmAllProgress{Cache: "user", RowsDone: 12345, RowsPerS: 999}, 20)
	if got != "user  12,345 rows  999 rows/s" {
		t.Fatalf("bar without total = %q", got)
	}
}
