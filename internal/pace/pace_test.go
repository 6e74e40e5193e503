package pace

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{Budget: time.Millisecond, MinBatch: 10, MaxBatch: 100}, ""},
		{Config{Budget: -1}, "budget"},
		{Config{MinBatch: -1}, "must not be negative"},
		{Config{MinBatch: 200, MaxBatch: 100}, "above max_batch"},
		{Config{MaxPause: -1}, "must not be negative"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// newStopped returns a pacer whose probe is not running, to drive the rule
// by hand.
func newStopped(cfg Config) *Pacer {
	cfg = cfg.withDefaults()
	return &Pacer{cfg: cfg, batch: float64(max(cfg.MinBatch, cfg.MaxBatch/10))}
}

func window(p *Pacer, rtts ...time.Duration) {
	p.probes = append(p.probes, rtts...)
	p.windowMin = slices.Min(rtts)
	p.controlLocked(p.cfg.ControlInterval)
}

// TestRuleAIMD drives the rule with windows of probe round trips: over the
// budget the batch halves and the pause doubles; back under, the pause
// shrinks to zero and then the batch grows by a tenth of MaxBatch a window.
func TestRuleAIMD(t *testing.T) {
	t.Parallel()
	p := newStopped(Config{Budget: 500 * time.Microsecond, MinBatch: 10, MaxBatch: 1000})
	quiet := []time.Duration{100 * time.Microsecond, 120 * time.Microsecond, 150 * time.Microsecond}
	for range 20 {
		window(p, quiet...)
	}
	if got := p.Stats(); got.Batch != 1000 || got.PauseMS != 0 {
		t.Fatalf("quiet server: %+v, want batch 1000 and no pause", got)
	}
	loaded := []time.Duration{100 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond}
	window(p, loaded...)
	if got := p.Stats(); got.Batch != 500 || got.PauseMS <= 0 || got.Slowdowns != 1 {
		t.Fatalf("after one loaded window: %+v, want batch 500, a pause, 1 slowdown", got)
	}
	for range 30 {
		window(p, loaded...)
	}
	got := p.Stats()
	if got.Batch != 10 || got.PauseMS != ms(p.cfg.MaxPause) {
		t.Fatalf("under lasting load: %+v, want batch 10 (min) and pause %v (max)", got, p.cfg.MaxPause)
	}
	if got.AddedLatencyMS < 2.5 {
		t.Fatalf("added latency %.3f ms, want the ~2.9 ms the window saw", got.AddedLatencyMS)
	}
	windows := 0
	for p.Stats().Batch < 1000 {
		window(p, quiet...)
		if windows++; windows > 60 {
			t.Fatalf("pace did not recover within 60 quiet windows (6 s): %+v", p.Stats())
		}
	}
	t.Logf("recovered to batch 1000 after %d quiet windows", windows)
}

// TestHoldCap: a batch whose own round trip is long is capped so that it
// fits the budget.
func TestHoldCap(t *testing.T) {
	t.Parallel()
	p := newStopped(Config{Budget: time.Millisecond, MinBatch: 10, MaxBatch: 1000})
	p.floors = []time.Duration{100 * time.Microsecond}
	for range 30 {
		p.Observe(100, 100*time.Microsecond+2*time.Millisecond) // 20us a key
	}
	if b := p.Batch(); b < 45 || b > 55 {
		t.Fatalf("batch %d, want about 50 (1ms budget / 20us a key)", b)
	}
}

// TestNilPacer: a nil pacer does nothing.
func TestNilPacer(t *testing.T) {
	t.Parallel()
	var p *Pacer
	if p.Batch() != 0 || p.Wait(context.Background()) != nil || p.Stats() != (Stats{}) {
		t.Fatal("nil pacer must do nothing")
	}
	p.Observe(10, time.Millisecond)
	p.Stop()
	var got [][]int
	err := Chunks(context.Background(), p, 3, []int{1, 2, 3, 4, 5, 6, 7}, func(_ context.Context, c []int) error {
		got = append(got, c)
		return nil
	})
	if err != nil || len(got) != 3 || len(got[2]) != 1 {
		t.Fatalf("Chunks with nil pacer: %v %v, want 3 chunks of at most 3", got, err)
	}
}

// TestProbeSeesLoad: a real server held busy by a Lua loop makes the
// pacer slow down; once the load stops, it speeds up again.
func TestProbeSeesLoad(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server (miniredis runs Lua off the clock)")
	}
	p, err := New(r.Client, Config{Budget: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// Tens of milliseconds of busy Lua, 20 times a second: far above the
	// budget, which is itself far above a shared machine's noise.
	load, stopLoad := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for load.Err() == nil {
			r.Client.Eval(load, "local i = 0 while i < 5000000 do i = i + 1 end return i", nil)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Slowdowns == 0 || p.Stats().PauseMS == 0 {
		if time.Now().After(deadline) {
			stopLoad()
			<-done
			t.Fatalf("no slowdown under load within 10s: %+v", p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	loaded := p.Stats()
	stopLoad()
	<-done
	deadline = time.Now().Add(20 * time.Second)
	for p.Stats().PauseMS > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pause did not return to 0 within 20s of the load's end: %+v", p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("under load: %+v; after: %+v", loaded, p.Stats())
}
