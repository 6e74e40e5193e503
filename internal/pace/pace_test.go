package pace

import (
	"context"
	"math/rand/v2"
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
		{Config{Budget: time.Millisecond, MinBatch: 10, MaxBatch: 100, MaxShare: 0.2}, ""},
		{Config{Budget: -1}, "budget"},
		{Config{MinBatch: -1}, "must not be negative"},
		{Config{MinBatch: 200, MaxBatch: 100}, "above max_batch"},
		{Config{MaxPause: -1}, "must not be negative"},
		{Config{MaxShare: 1.5}, "max_share"},
		{Config{CalibrateEvery: time.Second, CalibrateFor: 2 * time.Second}, "shorter than"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// clocked is a pacer without a probe goroutine, driven by synthetic probes
// on a synthetic clock.
type clocked struct {
	p   *Pacer
	now time.Time
}

func newClocked(cfg Config) *clocked {
	cfg = cfg.withDefaults()
	now := time.Unix(1_700_000_000, 0)
	return &clocked{p: newPacer(cfg, now), now: now}
}

// run feeds probes for d: each probe's round trip comes from rtt, which is
// told whether the pacer is in a quiet window (its batches held). Between
// probes, the maintenance runs at the allowed rate: keys are observed.
func (c *clocked) run(d time.Duration, rtt func(quiet bool) time.Duration) {
	end := c.now.Add(d)
	for c.now.Before(end) {
		quiet := c.now.Before(c.p.quietTo)
		r := rtt(quiet)
		c.p.mu.Lock()
		c.p.probeLocked(c.now, r)
		if !quiet { // the batches run at the allowed rate, up to what they can do
			c.p.keys += int64(min(c.p.target, capacity) * c.p.cfg.ProbeInterval.Seconds())
		}
		c.p.mu.Unlock()
		c.now = c.now.Add(max(c.p.cfg.ProbeInterval, r))
	}
}

// capacity is what the simulated batches can do back to back (keys/s).
const capacity = 500_000

func constant(d time.Duration) func(bool) time.Duration { return func(bool) time.Duration { return d } }

// TestRuleAIMD: probes no slower than in the quiet windows let the rate
// climb; probes 3 ms slower while the batches run (the maintenance holding
// Redis) cut it by 30% a decision down to the floor; when they are fast
// again it climbs back.
func TestRuleAIMD(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 300 * time.Microsecond, MinBatch: 10, MaxBatch: 1000})
	start := c.p.Stats().TargetKeysPerS
	c.run(3*time.Second, constant(100*time.Microsecond))
	climbed := c.p.Stats()
	if climbed.TargetKeysPerS < 2*start || climbed.TargetKeysPerS > 4*capacity || climbed.Slowdowns != 0 {
		t.Fatalf("quiet server: %+v, want the target rate well above its start %.0f and no slowdown", climbed, start)
	}
	hurt := func(quiet bool) time.Duration {
		if quiet {
			return 100 * time.Microsecond
		}
		return 3 * time.Millisecond
	}
	c.run(5*time.Second, hurt)
	low := c.p.Stats()
	if low.Slowdowns < 5 || low.TargetKeysPerS > c.p.minRate()*1.01 || low.AddedLatencyMS < 2.5 {
		t.Fatalf("batches adding 2.9 ms: %+v, want repeated slowdowns down to the floor %.0f keys/s", low, c.p.minRate())
	}
	elapsed := time.Duration(0)
	for c.p.Stats().TargetKeysPerS < climbed.TargetKeysPerS/2 {
		c.run(100*time.Millisecond, constant(100*time.Microsecond))
		if elapsed += 100 * time.Millisecond; elapsed > 5*time.Second {
			t.Fatalf("rate did not recover within 5s of the load's end: %+v", c.p.Stats())
		}
	}
	t.Logf("climbed to %.0f keys/s; under load %.0f; back to %.0f after %s", climbed.TargetKeysPerS, low.TargetKeysPerS, c.p.Stats().TargetKeysPerS, elapsed)
}

// TestNoiseIsNotLoad: a noisy machine (probes between 0.1 and 3 ms, in the
// quiet windows as much as between them) is not the maintenance's doing:
// the rate must not collapse to its floor, as a rule comparing the probe
// with a fixed floor would.
func TestNoiseIsNotLoad(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 300 * time.Microsecond})
	rng := rand.New(rand.NewPCG(1, 2))
	noisy := func(bool) time.Duration {
		if rng.IntN(10) == 0 {
			return time.Duration(1+rng.IntN(3)) * time.Millisecond
		}
		return time.Duration(100+rng.IntN(100)) * time.Microsecond
	}
	c.run(20*time.Second, noisy)
	st := c.p.Stats()
	if st.TargetKeysPerS < startRate(c.p.cfg) || st.KeysPerS < capacity/2 {
		t.Fatalf("noise alone: %+v, want the target at or above its start %.0f keys/s", st, startRate(c.p.cfg))
	}
	t.Logf("after 20s of noise: %+v", st)
}

// TestPauseFromRateAndShare: after a batch the pause is what keeps the
// allowed rate, and at least what keeps the batches' share of the time
// under MaxShare.
func TestPauseFromRateAndShare(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{MaxShare: 0.25})
	c.p.target = 10_000
	c.p.Observe(100, 2*time.Millisecond) // 100 keys at 10,000/s: 10 ms apart
	if got := c.p.Stats().PauseMS; got != 8 {
		t.Fatalf("pause %.3f ms, want 8 (10 ms spacing - 2 ms round trip)", got)
	}
	c.p.target = 10_000_000
	c.p.Observe(100, 2*time.Millisecond) // rate allows back to back; share 25%: 6 ms
	if got := c.p.Stats().PauseMS; got != 6 {
		t.Fatalf("pause %.3f ms, want 6 (a 25%% share of the time)", got)
	}
}

// TestHoldCap: a batch whose own round trip is long is capped so that it
// (and the SCAN page feeding it) fits the budget.
func TestHoldCap(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 2 * time.Millisecond, MinBatch: 10, MaxBatch: 1000})
	c.p.floor = 100 * time.Microsecond
	for range 30 {
		c.p.Observe(100, 100*time.Microsecond+2*time.Millisecond) // 20us a key
	}
	if b := c.p.Batch(); b < 45 || b > 55 {
		t.Fatalf("batch %d, want about 50 (half the 2ms budget / 20us a key)", b)
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

// TestQuietWindowsHoldBatches: Wait does not return inside a quiet window.
func TestQuietWindowsHoldBatches(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	p, err := New(r.Client, Config{CalibrateEvery: 400 * time.Millisecond, CalibrateFor: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx := context.Background()
	start := time.Now()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("first batch after %s, want it held for the first quiet window (100ms)", d)
	}
}

// TestProbeSeesLoad: on a real server, batches that hold Redis far longer
// than the budget (a SUNIONSTORE of a big set) make the pacer slow down; once the
// batches are cheap again, it speeds up.
func TestProbeSeesLoad(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server (miniredis runs commands off the clock)")
	}
	p, err := New(r.Client, Config{Budget: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	members := make([]any, 200_000)
	for i := range members {
		members[i] = i
	}
	if err := r.Client.SAdd(ctx, "big", members...).Err(); err != nil {
		t.Fatal(err)
	}
	batch := func(heavy bool) {
		_ = p.Do(ctx, 100, func(ctx context.Context) error {
			if heavy { // copying 200,000 members: tens of milliseconds, far above the budget
				return r.Client.SUnionStore(ctx, "copy", "big").Err()
			}
			return r.Client.Ping(ctx).Err()
		})
	}
	deadline := time.Now().Add(15 * time.Second)
	for p.Stats().Slowdowns == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no slowdown under heavy batches within 15s: %+v", p.Stats())
		}
		batch(true)
	}
	loaded := p.Stats()
	deadline = time.Now().Add(20 * time.Second)
	for p.Stats().TargetKeysPerS <= 2*loaded.TargetKeysPerS {
		if time.Now().After(deadline) {
			t.Fatalf("target rate did not double within 20s of cheap batches: %+v (under load %+v)", p.Stats(), loaded)
		}
		batch(false)
	}
	t.Logf("under load: %+v; after: %+v", loaded, p.Stats())
}
