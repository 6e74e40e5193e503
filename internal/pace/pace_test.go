package pace

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
// and INFO readings on a synthetic clock.
type clocked struct {
	p   *Pacer
	now time.Time
	// cmds is the server's total_commands_processed; others is the other
	// clients' rate (commands per second) added to it as time passes.
	cmds   float64
	others float64
}

func newClocked(cfg Config) *clocked {
	cfg = cfg.withDefaults()
	now := time.Unix(1_700_000_000, 0)
	return &clocked{p: newPacer(cfg, now), now: now}
}

// run feeds probes for d: each probe's round trip comes from rtt, which is
// told whether the pacer is in a quiet window (its batches held). The quiet
// windows read the command count as the probe goroutine does. Between
// probes, the maintenance runs at the allowed rate (all it can on an idle
// server): keys are observed, and their commands (three a key) counted by
// the server like the others'.
func (c *clocked) run(d time.Duration, rtt func(quiet bool) time.Duration) {
	end := c.now.Add(d)
	for c.now.Before(end) {
		c.p.mu.Lock()
		s := c.p.stepLocked(c.now)
		if s == stepCount {
			c.p.countedLocked(c.now, int64(c.cmds), nil)
			c.cmds++ // the INFO itself
			c.p.mu.Unlock()
			continue
		}
		quiet := c.p.open
		step := c.p.cfg.ProbeInterval
		if s == stepPing {
			r := rtt(quiet)
			c.p.probeLocked(c.now, r)
			c.cmds++ // the PING
			step = max(step, r)
		}
		if !quiet {
			rate := float64(capacity)
			if !c.p.idle {
				rate = min(c.p.target, capacity)
			}
			keys := int64(rate * step.Seconds())
			c.p.keys += keys
			c.cmds += 3 * float64(keys)
		}
		c.p.mu.Unlock()
		c.cmds += c.others * step.Seconds()
		c.now = c.now.Add(step)
	}
}

// capacity is what the simulated batches can do back to back (keys/s).
const capacity = 500_000

func constant(d time.Duration) func(bool) time.Duration { return func(bool) time.Duration { return d } }

// selfHurt: the maintenance's own batches slow the probe down (3 ms instead
// of 0.1 ms in the quiet windows), as on a server it has to itself.
func selfHurt(quiet bool) time.Duration {
	if quiet {
		return 100 * time.Microsecond
	}
	return 3 * time.Millisecond
}

// TestIdleServerNoPause: with no other client (a background of 20
// commands/s, under IdleBelow) the pacer is idle whatever its own batches
// do to the probe: batches of MaxBatch, no pause, no slowdown. The rule
// before this one measured its own batches and throttled itself here.
func TestIdleServerNoPause(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 300 * time.Microsecond, MinBatch: 10, MaxBatch: 1000})
	c.others = 20
	c.run(5*time.Second, selfHurt)
	st := c.p.statsAt(c.now)
	if st.Mode != ModeIdle || st.Slowdowns != 0 || st.OthersPerS > 50 || st.IdleS < 4.9 {
		t.Fatalf("idle server: %+v, want mode idle, no slowdown, others about 20/s", st)
	}
	c.p.Observe(1000, 5*time.Millisecond) // a slow batch: on an idle server, no reason to wait
	if st := c.p.Stats(); st.PauseMS != 0 || st.Batch != 1000 {
		t.Fatalf("idle server after a 5ms batch: pause %.3f ms, batch %d; want no pause and batches of max_batch", st.PauseMS, st.Batch)
	}
	if d := c.p.resumeAt; !d.IsZero() {
		t.Fatalf("idle server: next batch held until %s, want at once", d)
	}
	// The quiet windows are all that holds the batches: about 5% of the
	// time on the synthetic clock's 5 ms steps.
	if c.p.rate < 0.85*capacity {
		t.Fatalf("idle server: measured %.0f keys/s, want at least 85%% of the %d the batches can do", c.p.rate, capacity)
	}
	t.Logf("idle: %+v", st)
}

// TestOtherClientsMakeItBusy: another client at 2,000 commands/s makes the
// pacer busy at the next quiet window; its batches hurting the probe then
// slow it down (pauses, slowdowns); when the client goes away, the next
// window finds the server idle and the pauses stop.
func TestOtherClientsMakeItBusy(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 300 * time.Microsecond, MinBatch: 10, MaxBatch: 1000})
	c.run(2*time.Second, selfHurt)
	if st := c.p.Stats(); st.Mode != ModeIdle {
		t.Fatalf("no other client: %+v, want idle", st)
	}
	c.others = 2000
	c.run(3*time.Second, selfHurt)
	st := c.p.Stats()
	if st.Mode != ModeBusy || st.OthersPerS < 1500 || st.Slowdowns == 0 || st.TargetKeysPerS > startRate(c.p.cfg)/2 {
		t.Fatalf("another client at 2,000/s and batches adding 2.9 ms: %+v, want busy and slowed down", st)
	}
	c.p.Observe(100, time.Millisecond)
	if st := c.p.Stats(); st.PauseMS <= 0 {
		t.Fatalf("busy: pause %.3f ms after a batch, want a pause", st.PauseMS)
	}
	c.others = 0
	c.run(2500*time.Millisecond, selfHurt)
	if st := c.p.statsAt(c.now); st.Mode != ModeIdle || st.BusyS < 2 || st.BusyS > 4 || st.IdleS < 3 || st.IdleS > 5 {
		t.Fatalf("client gone: %+v, want idle again, with seconds in both modes", st)
	}
	c.p.Observe(100, time.Millisecond)
	if st := c.p.Stats(); st.PauseMS != 0 {
		t.Fatalf("idle again: pause %.3f ms, want none", st.PauseMS)
	}
}

// TestUnknownIsBusy: a server whose INFO cannot be read counts as busy.
func TestUnknownIsBusy(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{})
	c.p.mu.Lock()
	if s := c.p.stepLocked(c.now); s != stepCount {
		t.Fatalf("first step %v, want the window's first count", s)
	}
	c.p.countedLocked(c.now, 0, errors.New("ERR unknown command 'INFO'"))
	c.p.mu.Unlock()
	if st := c.p.Stats(); st.Mode != ModeBusy || st.OthersPerS != -1 || c.p.open {
		t.Fatalf("INFO failed: %+v (window open %v), want busy, others -1, window closed", st, c.p.open)
	}
}

// TestWindowWaitsForBatches: the count only starts once no batch is in
// flight, or the batch's own commands would be counted as others'.
func TestWindowWaitsForBatches(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{})
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.p.inflight = 1
	if s := c.p.stepLocked(c.now); s != stepPing {
		t.Fatalf("batch in flight: step %v, want a ping (no count yet)", s)
	}
	c.p.inflight = 0
	if s := c.p.stepLocked(c.now.Add(time.Millisecond)); s != stepCount {
		t.Fatalf("no batch in flight: step %v, want the count", s)
	}
}

// TestBurstIsNotAnApplication: a burst of the worker's own background (a
// heartbeat of every server at once) fills one half of a quiet window and
// leaves the server idle; an application at 2,000 commands/s fills both and
// makes it busy.
func TestBurstIsNotAnApplication(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{})
	p, now := c.p, c.now
	p.mu.Lock()
	defer p.mu.Unlock()
	p.countedLocked(now, 1000, nil)
	p.countedLocked(now.Add(20*time.Millisecond), 1000+1+30, nil) // the INFO, and a burst of 30
	p.countedLocked(now.Add(40*time.Millisecond), 1031+1, nil)    // nothing
	if !p.idle || p.open {
		t.Fatalf("burst in one half: idle %v, others %.0f/s, window open %v; want idle and the window closed", p.idle, p.others, p.open)
	}
	now = p.nextQuiet
	if s := p.stepLocked(now); s != stepCount || !p.open {
		t.Fatalf("next window: step %v, open %v; want it open and counting", s, p.open)
	}
	p.countedLocked(now, 5000, nil)
	p.countedLocked(now.Add(20*time.Millisecond), 5000+1+40, nil) // 2,000/s
	p.countedLocked(now.Add(40*time.Millisecond), 5041+1+40, nil)
	if p.idle || p.others < 1900 {
		t.Fatalf("2,000 commands/s in both halves: idle %v, others %.0f/s; want busy", p.idle, p.others)
	}
}

func TestOthersRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		delta, own int64
		el         time.Duration
		want       float64
	}{
		{21, 21, 100 * time.Millisecond, 0},
		{221, 21, 100 * time.Millisecond, 2000},
		{5, 21, 100 * time.Millisecond, 0},
		{5, 0, 0, -1},
	} {
		if got := othersRate(tc.delta, tc.own, tc.el); got != tc.want {
			t.Errorf("othersRate(%d, %d, %s) = %g, want %g", tc.delta, tc.own, tc.el, got, tc.want)
		}
	}
}

func TestParseCommands(t *testing.T) {
	t.Parallel()
	n, err := parseCommands("# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:12345\r\ninstantaneous_ops_per_sec:0\r\n")
	if err != nil || n != 12345 {
		t.Fatalf("parseCommands = %d, %v; want 12345", n, err)
	}
	if _, err := parseCommands("# Stats\r\n"); err == nil {
		t.Fatal("parseCommands without the field: no error")
	}
}

// TestRuleAIMD: probes no slower than in the quiet windows let the rate
// climb; probes 3 ms slower while the batches run (the maintenance holding
// Redis) cut it by 30% a decision down to the floor; when they are fast
// again it climbs back.
func TestRuleAIMD(t *testing.T) {
	t.Parallel()
	c := newClocked(Config{Budget: 300 * time.Microsecond, MinBatch: 10, MaxBatch: 1000})
	c.others = 2000 // an application is there: the rule applies
	start := c.p.Stats().TargetKeysPerS
	c.run(3*time.Second, constant(100*time.Microsecond))
	climbed := c.p.Stats()
	if climbed.TargetKeysPerS < 2*start || climbed.TargetKeysPerS > 4*capacity || climbed.Slowdowns != 0 {
		t.Fatalf("quiet server: %+v, want the target rate well above its start %.0f and no slowdown", climbed, start)
	}
	c.run(5*time.Second, selfHurt)
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
	c.others = 2000
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
	p, err := New(r.Client, Config{CalibrateEvery: 400 * time.Millisecond, CalibrateFor: 15 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx := context.Background()
	start := time.Now()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	p.Observe(0, 0)
	if d < 15*time.Millisecond {
		t.Fatalf("first batch after %s, want it held for the first quiet window (15ms)", d)
	}
}

// otherClient sends up to 25,000 commands a second (pipelines of 50 GETs
// every 2 ms; far fewer on a loaded machine, still well above
// DefaultIdleBelow) on rdb until the returned function is called: an
// application.
func otherClient(rdb redis.UniversalClient) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pipe := rdb.Pipeline()
			for range 50 {
				pipe.Get(ctx, "app:key")
			}
			_, _ = pipe.Exec(ctx)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// waitMode waits up to 10s for the pacer's mode, and fails the test with
// its last Stats otherwise.
func waitMode(t *testing.T, p *Pacer, mode string) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.Stats()
		if st.Mode == mode {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("mode not %s within 10s: %+v", mode, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDetectsOtherClient: on a real server with nobody else, the first
// quiet window finds it idle; with another client sending thousands of
// commands a second it turns busy; when that client stops, idle again.
func TestDetectsOtherClient(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server (INFO's command count)")
	}
	p, err := New(r.Client, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	idle := waitMode(t, p, ModeIdle)
	stop := otherClient(r.Client)
	busy := waitMode(t, p, ModeBusy)
	stop()
	again := waitMode(t, p, ModeIdle)
	if busy.OthersPerS <= DefaultIdleBelow || idle.OthersPerS > DefaultIdleBelow {
		t.Fatalf("others: idle %+v, busy %+v", idle, busy)
	}
	t.Logf("alone: %.0f other commands/s; with a client: %.0f/s; after: %.0f/s", idle.OthersPerS, busy.OthersPerS, again.OthersPerS)
}

// TestProbeSeesLoad: on a real server with another client active, batches
// that hold Redis far longer than the budget (a SUNIONSTORE of a big set)
// make the pacer slow down; once the batches are cheap again, it speeds up.
func TestProbeSeesLoad(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !r.Real {
		t.Skip("needs a real redis-server (miniredis runs commands off the clock)")
	}
	stop := otherClient(r.Client)
	defer stop()
	p, err := New(r.Client, Config{Budget: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitMode(t, p, ModeBusy)
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
