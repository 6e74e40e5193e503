package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

func init() {
	resultWatchers[tasks.KindWarmAll] = warmAllProgress
}

// plainProgressEvery spaces progress lines when the output is not a terminal.
const plainProgressEvery = 2 * time.Second

// warmAllProgress shows a cache:warm_all task's progress while --wait waits:
// a bar redrawn in place on a terminal, plain lines otherwise (logs, CI).
// It writes to stderr so that stdout keeps only the final result.
func warmAllProgress(cio IO) (func([]byte), func()) {
	p := &progressView{out: cio.Stderr, tty: cio.IsTerminal, now: time.Now}
	return p.update, p.finish
}

type progressView struct {
	out       io.Writer
	tty       bool
	now       func() time.Time
	lastPlain time.Time
	drawn     bool
	lastLine  string
}

func (p *progressView) update(result []byte) {
	var pr worker.WarmAllProgress
	if err := json.Unmarshal(result, &pr); err != nil || pr.Cache == "" {
		return // not a progress report
	}
	if p.tty {
		line := progressBar(pr, 30)
		// Pad to the previous line's width so that a shorter line leaves no tail.
		pad := max(0, len(p.lastLine)-len(line))
		fmt.Fprintf(p.out, "\r%s%s", line, strings.Repeat(" ", pad))
		p.lastLine, p.drawn = line, true
		return
	}
	if !pr.Done && p.now().Sub(p.lastPlain) < plainProgressEvery {
		return
	}
	p.lastPlain = p.now()
	fmt.Fprintln(p.out, progressLine(pr))
}

func (p *progressView) finish() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.out)
		p.drawn = false
	}
}

// progressBar renders "user [#######.......]  45.2%  452,000/1,000,000 rows  98,765 rows/s  ETA 6s",
// or without a known total "user  452,000 rows  98,765 rows/s".
func progressBar(pr worker.WarmAllProgress, width int) string {
	rate := formatNumber(pr.RowsPerS) + " rows/s"
	if pr.Total <= 0 {
		state := ""
		if pr.Done {
			state = "  done"
		}
		return fmt.Sprintf("%s  %s rows  %s%s", pr.Cache, formatNumber(float64(pr.RowsDone)), rate, state)
	}
	frac := min(1, float64(pr.RowsDone)/float64(pr.Total))
	if pr.Done {
		frac = 1
	}
	filled := int(frac * float64(width))
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	tail := ""
	switch {
	case pr.Done:
		tail = fmt.Sprintf("  done in %s", (time.Duration(pr.ElapsedS * float64(time.Second))).Round(100*time.Millisecond))
	case pr.RowsPerS > 0 && pr.Total > pr.RowsDone:
		eta := time.Duration(float64(pr.Total-pr.RowsDone) / pr.RowsPerS * float64(time.Second))
		tail = "  ETA " + eta.Round(time.Second).String()
	}
	return fmt.Sprintf("%s [%s] %5.1f%%  %s/%s rows  %s%s", pr.Cache, bar, frac*100,
		formatNumber(float64(pr.RowsDone)), formatNumber(float64(pr.Total)), rate, tail)
}

// progressLine renders one plain line: "warm_all user: 452000/1000000 rows (45.2%), 98765 rows/s".
func progressLine(pr worker.WarmAllProgress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "warm_all %s: %d", pr.Cache, pr.RowsDone)
	if pr.Total > 0 {
		fmt.Fprintf(&b, "/%d rows (%.1f%%)", pr.Total, min(100, float64(pr.RowsDone)*100/float64(pr.Total)))
	} else {
		b.WriteString(" rows")
	}
	fmt.Fprintf(&b, ", %.0f rows/s", pr.RowsPerS)
	if pr.ResumedFrom > 0 {
		fmt.Fprintf(&b, ", resumed from %d", pr.ResumedFrom)
	}
	if pr.Done {
		b.WriteString(", done")
	}
	return b.String()
}
