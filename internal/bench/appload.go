package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The application loop of bench maintenance: HGETALL of small hashes at a
// fixed rate, every request's latency recorded with its start time. It runs
// in a process of its own (AppLoad, behind `cachekeeper bench app-load`), as
// a real application does, so that its latency is not that of a Go runtime
// shared with the maintenance; or in-process when no command is given
// (tests).

const appWorkers = 4

// appHashes are the application's keys (maintPrefix + "app:" + 0..999).
const appHashes = 1000

// AppLoad is the application loop as a process: it seeds its hashes on rdb,
// sends HGETALL at rate requests per second from four goroutines, and
// writes one line per request to out: the start (Unix nanoseconds) and the
// latency (nanoseconds). Lines "pause" and "resume" on in stop and restart
// the requests; the end of in (or ctx) ends the loop.
func AppLoad(ctx context.Context, rdb redis.UniversalClient, rate int, in io.Reader, out io.Writer) error {
	if rate < 1 {
		return fmt.Errorf("%w: bench app-load: --app-rate must be at least 1, got %d", ErrInvalidOptions, rate)
	}
	if err := seedApp(ctx, rdb); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var paused atomic.Bool
	go func() {
		defer cancel()
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			switch strings.TrimSpace(sc.Text()) {
			case "pause":
				paused.Store(true)
			case "resume":
				paused.Store(false)
			}
		}
	}()
	w := bufio.NewWriter(out)
	var mu sync.Mutex
	var werr error
	flush := time.NewTicker(20 * time.Millisecond)
	defer flush.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runApp(ctx, rdb, rate, &paused, func(at time.Time, lat time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if werr == nil {
				_, werr = fmt.Fprintf(w, "%d %d\n", at.UnixNano(), lat.Nanoseconds())
			}
		})
	}()
	for {
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			if err := w.Flush(); werr == nil {
				werr = err
			}
			return werr
		case <-flush.C:
			mu.Lock()
			if err := w.Flush(); werr == nil {
				werr = err
			}
			err := werr
			mu.Unlock()
			if err != nil {
				cancel() // the reader is gone
			}
		}
	}
}

func seedApp(ctx context.Context, rdb redis.UniversalClient) error {
	pipe := rdb.Pipeline()
	for i := 0; i < appHashes; i++ {
		id := strconv.Itoa(i)
		pipe.HSet(ctx, maintPrefix+"app:"+id, "id", id, "email", "user"+id+"@example.com", "name", "User "+id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bench maintenance: seed the application's hashes: %w", err)
	}
	return nil
}

// runApp sends the requests until ctx ends, and reports each one.
func runApp(ctx context.Context, rdb redis.UniversalClient, rate int, paused *atomic.Bool, report func(at time.Time, lat time.Duration)) {
	interval := time.Duration(float64(time.Second) * appWorkers / float64(rate))
	var wg sync.WaitGroup
	for w := 0; w < appWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(time.Duration(w) * interval / appWorkers)
			for i := w; ctx.Err() == nil; i += appWorkers {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				if paused.Load() {
					continue
				}
				start := time.Now()
				err := rdb.HGetAll(ctx, maintPrefix+"app:"+strconv.Itoa(i%appHashes)).Err()
				lat := time.Since(start)
				if err == nil {
					report(start, lat)
				}
				if behind := time.Since(next); behind > time.Second {
					next = time.Now() // do not burst to catch up after a stall
				}
			}
		}()
	}
	wg.Wait()
}

// appLoop is the application seen from the benchmark: its samples, and how
// to pause and stop it.
type appLoop struct {
	pause func(on bool)
	stop  func()

	mu      sync.Mutex
	samples []appSample
	// lastAt is the start of the latest sample received (a process's lines
	// arrive a few tens of milliseconds late).
	lastAt time.Time
}

type appSample struct {
	at  time.Time
	lat time.Duration
}

func (a *appLoop) add(at time.Time, lat time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.samples = append(a.samples, appSample{at, lat})
	if at.After(a.lastAt) {
		a.lastAt = at
	}
}

// startApp starts the application loop: in this process on rdb when
// command is empty, else as the process command (AppLoad's protocol).
func startApp(ctx context.Context, rdb redis.UniversalClient, rate int, command []string) (*appLoop, error) {
	a := &appLoop{}
	if len(command) == 0 {
		if err := seedApp(ctx, rdb); err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		var paused atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			runApp(ctx, rdb, rate, &paused, a.add)
		}()
		a.pause = paused.Store
		a.stop = func() { cancel(); <-done }
		return a, nil
	}
	cmd := exec.Command(command[0], command[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench maintenance: start the application process: %w", err)
	}
	read := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			at, lat, ok := strings.Cut(sc.Text(), " ")
			ns, err1 := strconv.ParseInt(at, 10, 64)
			l, err2 := strconv.ParseInt(lat, 10, 64)
			if ok && err1 == nil && err2 == nil {
				a.add(time.Unix(0, ns), time.Duration(l))
			}
		}
		read <- sc.Err()
	}()
	var once sync.Once
	a.pause = func(on bool) {
		msg := "resume\n"
		if on {
			msg = "pause\n"
		}
		_, _ = io.WriteString(stdin, msg)
	}
	a.stop = func() {
		once.Do(func() {
			_ = stdin.Close()
			<-read
			_ = cmd.Wait()
		})
	}
	// The process is ready once its first sample arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		n := len(a.samples)
		a.mu.Unlock()
		if n > 0 {
			return a, nil
		}
		select {
		case err := <-read:
			_ = cmd.Wait()
			return nil, fmt.Errorf("bench maintenance: the application process ended before its first request (%v): %s", err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			a.stop()
			return nil, errors.New("bench maintenance: the application process sent no request within 10s: " + strings.TrimSpace(stderr.String()))
		}
	}
}

// between returns the sorted latencies of requests started in [from, to),
// once the loop has reported requests started after to (a process's lines
// arrive late; at most a second is waited), and forgets older samples.
func (a *appLoop) between(from, to time.Time) []time.Duration {
	deadline := time.Now().Add(time.Second)
	for {
		a.mu.Lock()
		caught := !a.lastAt.Before(to)
		a.mu.Unlock()
		if caught || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for _, s := range a.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s.lat)
		}
	}
	a.samples = slices.DeleteFunc(a.samples, func(s appSample) bool { return s.at.Before(to) })
	slices.Sort(out)
	return out
}
