// Package pace paces maintenance that walks or rewrites many keys (pattern
// and tag invalidation, tag pruning, session cleanup, rate-limit pruning,
// warm_all writes) by what the other clients of Redis experience.
//
// Nobody to protect, nothing to slow down: every CalibrateEvery the pacer
// holds its batches for a short quiet window and reads Redis's
// total_commands_processed (INFO stats) at its start, middle and end; what
// was processed in each half, less the pacer's own probes, is the other
// clients' command rate, and the smaller of the two counts (a burst of a
// worker's own background fills one half, an application both). At or
// under IdleBelow (the worker's own background polls are a few dozen a
// second) the server is idle: batches of MaxBatch run back to back, with no
// pause, no rate rule and no probe, and maintenance runs at the speed of
// unpaced maintenance but for the quiet windows (about 5% of the time). A
// server whose INFO cannot be read counts as busy.
//
// When other clients are there, what they feel is how long one command
// holds Redis (a batch of 1,000 keys holds every other client for about a
// millisecond whatever the rate) and how much of the time Redis (and, on a
// small machine, the CPUs) are busy with maintenance. The pacer then
// controls both:
//
//   - the batch size, so that one batch's own round trip, measured on every
//     batch, stays under Budget;
//   - the rate (keys per second), by a pause after each batch, with an AIMD
//     rule driven by a probe.
//
// The probe PINGs Redis every ProbeInterval on a connection of its own,
// concurrent with the batches: its round trips are what an application's
// command sees. The probes of the quiet windows measure what the machine
// and Redis cost without this maintenance (the other clients, other
// processes, a noisy host), which the pacer neither causes nor cures.
// Every ControlInterval, once it has at least epochProbes fresh probes, it
// compares their percentile with that of the recent quiet windows: the
// difference is the latency the maintenance adds. Above Budget the rate is
// cut by 30% (multiplicative decrease); well under it the rate grows by 50%,
// else by 10% (increase); a decision is only made on probes taken after the
// previous one, so one slow spell is not counted twice. While an
// application loads the server the rate settles where the application's
// tail latency is back within the budget; when it goes away, the next quiet
// window finds the server idle and the maintenance runs at full speed again.
//
// The detection is driven by the readings it is given (stepLocked,
// countedLocked, othersRate), so tests check "no other client, no pause"
// and "another client, paced" on a synthetic clock without timing anything.
//
// A nil *Pacer is valid and does nothing (unpaced maintenance).
package pace

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
)

// Defaults used when a Config field is zero.
const (
	DefaultBudget          = 300 * time.Microsecond
	DefaultMinBatch        = 20
	DefaultMaxBatch        = 1000
	DefaultMaxPause        = 50 * time.Millisecond
	DefaultProbeInterval   = 5 * time.Millisecond
	DefaultControlInterval = 100 * time.Millisecond
	DefaultCalibrateEvery  = time.Second
	DefaultCalibrateFor    = 100 * time.Millisecond
	DefaultMaxShare        = 0.5
	DefaultIdleBelow       = 200
)

// Config configures a Pacer. The zero value takes every default.
type Config struct {
	// Budget is the latency maintenance may add to other clients' commands:
	// the probe's percentile over that of the pacer's quiet windows, and
	// the most one batch's round trip may take (default DefaultBudget).
	// It applies only while other clients are active.
	Budget time.Duration
	// MinBatch and MaxBatch bound the keys per batch (defaults
	// DefaultMinBatch, DefaultMaxBatch). On an idle server every batch is
	// MaxBatch.
	MinBatch, MaxBatch int
	// MaxPause bounds the pause between batches (default DefaultMaxPause):
	// under any load the maintenance still moves at MinBatch keys per
	// MaxPause at least.
	MaxPause time.Duration
	// ProbeInterval is how often the probe PINGs (default
	// DefaultProbeInterval): 200 cheap commands a second.
	ProbeInterval time.Duration
	// ControlInterval is the shortest time between two decisions of the
	// rule (default DefaultControlInterval).
	ControlInterval time.Duration
	// MaxShare is the largest share of the time the batches' round trips
	// may take while other clients are active (default DefaultMaxShare): on
	// a small machine Redis and the application need the CPUs too, so a
	// batch is then followed by a pause of rtt*(1-MaxShare)/MaxShare.
	MaxShare float64
	// CalibrateEvery and CalibrateFor: every CalibrateEvery the batches are
	// held for a quiet window, to count the other clients' commands and to
	// measure the probe without this maintenance: CalibrateFor while other
	// clients are active, min(CalibrateFor, idleWindow) on an idle server
	// (defaults DefaultCalibrateEvery, DefaultCalibrateFor).
	CalibrateEvery, CalibrateFor time.Duration
	// IdleBelow is the other clients' rate, in commands per second, at or
	// under which the server counts as idle and maintenance runs unpaced
	// (default DefaultIdleBelow; each idle cachekeeper worker sends a few
	// dozen a second).
	IdleBelow float64
}

// Validate reports the first invalid field in one line.
func (c Config) Validate() error {
	switch {
	case c.Budget < 0:
		return fmt.Errorf("pace: budget %s must be positive (or 0 for the default %s)", c.Budget, DefaultBudget)
	case c.MinBatch < 0 || c.MaxBatch < 0:
		return fmt.Errorf("pace: min_batch %d and max_batch %d must not be negative", c.MinBatch, c.MaxBatch)
	case c.MinBatch > 0 && c.MaxBatch > 0 && c.MinBatch > c.MaxBatch:
		return fmt.Errorf("pace: min_batch %d is above max_batch %d", c.MinBatch, c.MaxBatch)
	case c.MaxPause < 0 || c.ProbeInterval < 0 || c.ControlInterval < 0 || c.CalibrateEvery < 0 || c.CalibrateFor < 0:
		return errors.New("pace: max_pause, probe_interval, control_interval and the calibration times must not be negative")
	case c.MaxShare < 0 || c.MaxShare > 1:
		return fmt.Errorf("pace: max_share %g must be between 0 and 1 (or 0 for the default %g)", c.MaxShare, DefaultMaxShare)
	case c.CalibrateEvery > 0 && c.CalibrateFor >= c.CalibrateEvery:
		return fmt.Errorf("pace: calibrate_for %s must be shorter than calibrate_every %s", c.CalibrateFor, c.CalibrateEvery)
	case c.IdleBelow < 0:
		return fmt.Errorf("pace: idle_below %g must not be negative (or 0 for the default %d)", c.IdleBelow, DefaultIdleBelow)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Budget == 0 {
		c.Budget = DefaultBudget
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = max(DefaultMaxBatch, c.MinBatch)
	}
	if c.MinBatch == 0 {
		c.MinBatch = min(DefaultMinBatch, c.MaxBatch)
	}
	if c.MaxPause == 0 {
		c.MaxPause = DefaultMaxPause
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ControlInterval == 0 {
		c.ControlInterval = DefaultControlInterval
	}
	if c.MaxShare == 0 {
		c.MaxShare = DefaultMaxShare
	}
	if c.CalibrateEvery == 0 {
		c.CalibrateEvery = DefaultCalibrateEvery
	}
	if c.CalibrateFor == 0 {
		c.CalibrateFor = min(DefaultCalibrateFor, c.CalibrateEvery/2)
	}
	if c.IdleBelow == 0 {
		c.IdleBelow = DefaultIdleBelow
	}
	return c
}

// FromConfig is the Config of the `pace:` block (pacing disabled is the
// caller's business: it then runs without a Pacer).
func FromConfig(c config.PaceConfig) Config {
	return Config{Budget: c.LatencyBudget, MinBatch: c.MinBatch, MaxBatch: c.MaxBatch,
		MaxPause: c.MaxPause, ProbeInterval: c.ProbeInterval, MaxShare: c.MaxShare,
		IdleBelow: float64(c.IdleCommandsPerSecond)}
}

// Modes of a Pacer (Stats.Mode).
const (
	// ModeIdle: no other client was active in the last quiet window; batches
	// of MaxBatch run back to back.
	ModeIdle = "idle"
	// ModeBusy: other clients were active (or INFO could not be read); the
	// batch size and the rate are paced by the probe.
	ModeBusy = "busy"
)

// Stats is what a Pacer is doing, for a job's progress and result.
type Stats struct {
	// Mode is ModeIdle or ModeBusy, as the last quiet window found.
	Mode string `json:"mode"`
	// OthersPerS is the other clients' commands per second in the last
	// quiet window (-1 when INFO could not be read).
	OthersPerS float64 `json:"others_commands_per_s"`
	// IdleS and BusyS are the seconds spent in each mode so far; QuietS
	// those the batches were held by quiet windows.
	IdleS  float64 `json:"idle_s"`
	BusyS  float64 `json:"busy_s"`
	QuietS float64 `json:"quiet_s"`
	// Batch is the current number of keys per batch.
	Batch int `json:"batch"`
	// KeysPerS is the recent rate (keys per second, last control windows).
	KeysPerS float64 `json:"keys_per_s"`
	// TargetKeysPerS is the rate the rule currently allows while busy.
	TargetKeysPerS float64 `json:"target_keys_per_s"`
	// AddedLatencyMS is the latency the probe saw above its quiet windows
	// (percentiles of the last decision while busy), in milliseconds.
	AddedLatencyMS float64 `json:"added_latency_ms"`
	// BudgetMS is the configured budget, in milliseconds.
	BudgetMS float64 `json:"budget_ms"`
	// RoundTripMS is the round trip of the last batch, in milliseconds.
	RoundTripMS float64 `json:"round_trip_ms"`
	// PauseMS is the last pause after a batch, in milliseconds.
	PauseMS float64 `json:"pause_ms"`
	// Slowdowns counts the multiplicative decreases so far.
	Slowdowns int64 `json:"slowdowns"`
}

// Pacer paces one maintenance run. It is safe for concurrent use. Create
// it with New, call Stop when the run ends.
type Pacer struct {
	cfg  Config
	rdb  redis.UniversalClient
	stop context.CancelFunc
	done chan struct{}

	mu       sync.Mutex
	target   float64 // keys per second the rule allows while busy
	lastRTT  time.Duration
	holdCap  float64 // keys whose round trip fits in the budget; 0 = unknown
	perKey   []float64
	pause    time.Duration
	resumeAt time.Time // no batch starts before (pause after the last batch)
	inflight int       // batches between Wait and Observe

	// The quiet window: batches are held while open.
	open      bool
	wake      chan struct{} // closed when the window closes
	quietFrom time.Time     // opened at
	nextQuiet time.Time     // when the next window opens
	counting  bool          // the first INFO of the window was read
	countFrom time.Time     // when
	halfDone  bool          // the second INFO (half of the window) was read
	halfAt    time.Time     // when
	firstHalf float64       // the other clients' commands/s in the first half
	count0    int64         // total_commands_processed at the last reading
	ownCmds   int64         // the pacer's own commands since

	idle      bool
	measured  bool    // a window has closed
	others    float64 // other clients' commands/s, -1 unknown
	modeSince time.Time
	idleFor   time.Duration
	busyFor   time.Duration
	quietFor  time.Duration // windows closed so far

	quiet     []time.Duration // probes of recent quiet windows
	active    []time.Duration // probes since the last decision
	floor     time.Duration   // smallest probe round trip seen
	excess    time.Duration
	keys      int64 // keys observed since the last rate measurement
	lastCtl   time.Time
	rate      float64
	slowdowns int64
}

// New validates cfg and starts a pacer whose probe PINGs rdb until Stop.
// The first batches wait for one short quiet window (about 20ms), which
// finds out whether other clients are active before the maintenance starts.
func New(rdb redis.UniversalClient, cfg Config) (*Pacer, error) {
	if rdb == nil {
		return nil, errors.New("pace: nil Redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	p := newPacer(cfg, time.Now())
	p.rdb, p.stop, p.done = rdb, cancel, make(chan struct{})
	go p.probeLoop(ctx)
	return p, nil
}

// newPacer is the rule's state at now, without a probe: busy (as safe as
// it gets) until a quiet window says otherwise, and that window open.
func newPacer(cfg Config, now time.Time) *Pacer {
	return &Pacer{cfg: cfg, target: startRate(cfg), lastCtl: now, others: -1, modeSince: now,
		open: true, wake: make(chan struct{}), quietFrom: now, nextQuiet: now.Add(cfg.CalibrateEvery)}
}

// startRate is where the rate starts when busy: a tenth of MaxBatch keys
// per millisecond (100,000 keys/s by default); the rule takes it up or down
// within a second.
func startRate(cfg Config) float64 { return float64(cfg.MaxBatch) * 100 }

// minRate is the floor of the rate: MinBatch keys per MaxPause.
func (p *Pacer) minRate() float64 {
	return float64(p.cfg.MinBatch) / p.cfg.MaxPause.Seconds()
}

// Stop ends the probe. It is safe to call more than once, and on nil.
func (p *Pacer) Stop() {
	if p == nil {
		return
	}
	p.stop()
	<-p.done
}

// Batch is how many keys the next batch should carry (0 on a nil Pacer:
// the caller's own size).
func (p *Pacer) Batch() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.batchLocked()
}

func (p *Pacer) batchLocked() int {
	b := float64(p.cfg.MaxBatch)
	if p.holdCap > 0 && !p.idle {
		b = min(b, p.holdCap)
	}
	return int(math.Max(float64(p.cfg.MinBatch), b))
}

// Wait sleeps until the next batch may start (the pause after the last
// one, or the end of a quiet window), or until ctx ends. Every Wait that
// returns nil must be followed by Observe (Do and Chunks do both): the
// pacer counts the batches in flight, and a quiet window only starts
// counting commands once none is.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.mu.Lock()
		if p.open {
			wake := p.wake
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			}
			continue
		}
		d := time.Until(p.resumeAt)
		if d <= 0 {
			p.inflight++
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Observe records that a batch of n keys took rtt (its round trips), and
// sets the pause before the next one: none on an idle server, else from
// the allowed rate and MaxShare.
func (p *Pacer) Observe(n int, rtt time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = max(p.inflight-1, 0)
	if n <= 0 {
		return
	}
	p.lastRTT = rtt
	p.keys += int64(n)
	// The keys whose round trip would fit the budget, at the best cost per
	// key of recent batches: a busy client or machine only adds to a round
	// trip, so the smallest is the closest to what Redis spent.
	perKey := float64(max(rtt-p.floor, time.Microsecond)) / float64(n)
	p.perKey = append(p.perKey, perKey)
	if len(p.perKey) > perKeyBatches {
		p.perKey = p.perKey[1:]
	}
	// Half the budget: a walk's SCAN page holds Redis about as long as the
	// batch it feeds, and the two may run back to back.
	p.holdCap = float64(p.cfg.Budget) / 2 / slices.Min(p.perKey)
	if p.idle {
		p.pause, p.resumeAt = 0, time.Time{}
		return
	}
	// The rate the rule allows, and the share of the time batches may hold
	// Redis: a batch's round trip is followed by a pause of at least
	// rtt*(1-MaxShare)/MaxShare.
	spacing := max(time.Duration(float64(n)/p.target*float64(time.Second)), time.Duration(float64(rtt)/p.cfg.MaxShare))
	p.pause = min(max(spacing-rtt, 0), p.cfg.MaxPause)
	p.resumeAt = time.Now().Add(p.pause)
}

// perKeyBatches is how many batches the cost per key is taken over.
const perKeyBatches = 32

// Do waits for the pause, runs fn (a batch of n keys), and observes how long
// it took.
func (p *Pacer) Do(ctx context.Context, n int, fn func(context.Context) error) error {
	if err := p.Wait(ctx); err != nil {
		return err
	}
	start := time.Now()
	err := fn(ctx)
	p.Observe(n, time.Since(start))
	return err
}

// Chunks calls fn with consecutive pieces of items, each of the pacer's
// current batch size (or def on a nil Pacer), pausing between them.
func Chunks[T any](ctx context.Context, p *Pacer, def int, items []T, fn func(context.Context, []T) error) error {
	for len(items) > 0 {
		n := p.Batch()
		if n <= 0 {
			n = def
		}
		n = min(n, len(items))
		chunk := items[:n]
		if err := p.Do(ctx, n, func(ctx context.Context) error { return fn(ctx, chunk) }); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// Stats returns what the pacer is doing (the zero Stats on nil).
func (p *Pacer) Stats() Stats {
	if p == nil {
		return Stats{}
	}
	return p.statsAt(time.Now())
}

// statsAt is Stats with the current mode's time counted up to now.
func (p *Pacer) statsAt(now time.Time) Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode, idleFor, busyFor := ModeBusy, p.idleFor, p.busyFor
	if p.idle {
		mode = ModeIdle
		idleFor += now.Sub(p.modeSince)
	} else {
		busyFor += now.Sub(p.modeSince)
	}
	return Stats{
		Mode:           mode,
		OthersPerS:     math.Round(p.others),
		IdleS:          math.Round(idleFor.Seconds()*10) / 10,
		BusyS:          math.Round(busyFor.Seconds()*10) / 10,
		QuietS:         math.Round(p.quietFor.Seconds()*100) / 100,
		Batch:          p.batchLocked(),
		KeysPerS:       math.Round(p.rate),
		TargetKeysPerS: math.Round(p.target),
		AddedLatencyMS: ms(p.excess),
		BudgetMS:       ms(p.cfg.Budget),
		RoundTripMS:    ms(p.lastRTT),
		PauseMS:        ms(p.pause),
		Slowdowns:      p.slowdowns,
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
