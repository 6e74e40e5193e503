package bench_test

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// TestAppLoadProtocol: the application loop as a process writes one
// "<start ns> <latency ns>" line per request, stops on "pause", starts again
// on "resume" and ends with its input.
func TestAppLoadProtocol(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := bench.AppLoad(ctx, r.Client, 1000, inR, outW)
		_ = outW.Close()
		done <- err
	}()
	lines := make(chan string, 100_000)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// count reads the lines that arrive within d, checking their shape.
	count := func(d time.Duration) int {
		n := 0
		timeout := time.After(d)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return n
				}
				at, lat, found := strings.Cut(l, " ")
				ns, err1 := strconv.ParseInt(at, 10, 64)
				l2, err2 := strconv.ParseInt(lat, 10, 64)
				if !found || err1 != nil || err2 != nil || l2 <= 0 || time.Since(time.Unix(0, ns)) > time.Minute {
					t.Fatalf("line %q, want \"<start unix ns> <latency ns>\"", l)
				}
				n++
			case <-timeout:
				return n
			}
		}
	}
	if n := count(500 * time.Millisecond); n < 50 {
		t.Fatalf("%d requests in 0.5s at 1,000/s, want at least 50", n)
	}
	if _, err := io.WriteString(inW, "pause\n"); err != nil {
		t.Fatal(err)
	}
	count(300 * time.Millisecond) // requests in flight and lines buffered
	if n := count(500 * time.Millisecond); n != 0 {
		t.Fatalf("%d requests in 0.5s while paused, want none", n)
	}
	if _, err := io.WriteString(inW, "resume\n"); err != nil {
		t.Fatal(err)
	}
	if n := count(500 * time.Millisecond); n < 50 {
		t.Fatalf("%d requests in 0.5s after resume, want at least 50", n)
	}
	_ = inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("AppLoad after its input ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AppLoad did not end within 10s of its input's end")
	}
	count(time.Second)
}
