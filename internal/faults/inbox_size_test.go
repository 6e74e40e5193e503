package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// peakRSSKB reads a process's peak resident set (VmHWM) in KiB.
func peakRSSKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestOversizedInboxEntry pushes a valid 20 MB entry onto the inbox of a
// running worker (inbox.max_entry_bytes is 1 MiB by default): it is
// dead-lettered unparsed, the worker's peak memory grows by a fraction of
// what decoding it took, the dead letter keeps 16 KiB of it, and
// `inbox dead list` prints a bounded line.
func TestOversizedInboxEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testenv.NewRedis(t)
	cfgPath := writeConfig(t, notifyConfig(fmt.Sprintf("redis: {url: %q}", r.URL)))
	w := startedWorker(t, "worker", cfgPath)
	time.Sleep(500 * time.Millisecond)
	before := peakRSSKB(t, w.cmd.Process.Pid)
	big := `{"kind":"cache:invalidate","args":{"keys":["` + strings.Repeat("k", 20<<20) + `"]}}`
	inbox := keys.Default().Inbox()
	if err := r.Client.LPush(ctx, inbox, big).Err(); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, 20*time.Second, "oversized entry dead-lettered", func() bool {
		return r.Client.LLen(ctx, keys.DeadLetter(inbox)).Val() == 1 && r.Client.LLen(ctx, inbox).Val() == 0
	})
	rec := r.Client.LIndex(ctx, keys.DeadLetter(inbox), 0).Val()
	after := peakRSSKB(t, w.cmd.Process.Pid)
	t.Logf("20 MiB entry dead-lettered in %.2fs; worker peak RSS %d -> %d MiB (+%d MiB); dead letter %d bytes",
		took.Seconds(), before/1024, after/1024, (after-before)/1024, len(rec))
	if len(rec) > 20<<10 || !strings.Contains(rec, `"truncated":true`) || !strings.Contains(rec, "inbox.max_entry_bytes") {
		t.Errorf("dead letter of %d bytes: %.200s", len(rec), rec)
	}
	if grow := (after - before) / 1024; grow > 120 {
		t.Errorf("worker peak RSS grew by %d MiB for a 20 MiB entry; want it read once, not decoded", grow)
	}
	var out bytes.Buffer
	list := exec.Command(binary, "inbox", "dead", "list", "--config", cfgPath)
	list.Stdout, list.Stderr = &out, &out
	if err := list.Run(); err != nil {
		t.Fatalf("inbox dead list: %v\n%s", err, out.String())
	}
	if out.Len() > 4096 || !strings.Contains(out.String(), fmt.Sprintf("(%d bytes)", len(big))) {
		t.Errorf("inbox dead list printed %d bytes: %.500s", out.Len(), out.String())
	}
}
