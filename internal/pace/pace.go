// Package pace paces maintenance that walks or rewrites many keys (pattern
// and tag invalidation, tag pruning, session cleanup, rate-limit pruning,
// warm_all writes) by what Redis is doing, so that the application sharing
// the server keeps its latency.
//
// A fixed rate cap does not protect the application: what it feels is how
// long one command holds Redis (a batch of 1,000 keys holds every other
// client for about a millisecond whatever the rate) and how much of the
// time Redis (and, on a small machine, the CPUs) are busy with maintenance.
// A Pacer controls both:
//
//   - the batch size, so that one batch's own round trip, measured on every
//     batch, stays under Budget;
//   - the rate (keys per second), by a pause after each batch, with an AIMD
//     rule driven by a probe.
//
// The probe PINGs Redis every ProbeInterval on a connection of its own,
// concurrent with the batches: its round trips are what an application's
// command sees. Every CalibrateEvery the pacer holds its batches for
// CalibrateFor and keeps the probes of that quiet window: they measure what
// the machine and Redis cost without this maintenance (other clients,
// other processes, a noisy host), which the pacer neither causes nor cures.
// Every ControlInterval, once it has at least epochProbes fresh probes, it
// compares their 95th percentile with that of the recent quiet windows: the
// difference is the latency the maintenance adds. Above Budget the rate is
// cut by 30% (multiplicative decrease); well under it the rate grows by 50%,
// else by 10% (increase); a decision is only made on probes taken after the
// previous one, so one slow spell is not counted twice. On an idle server the
// rate climbs to what the batches can do back to back; while an application
// loads the server it settles where the application's tail latency is back
// within the budget; when the load goes away it climbs again.
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
)

// Config configures a Pacer. The zero value takes every default.
type Config struct {
	// Budget is the latency maintenance may add to other clients' commands:
	// the probe's 95th percentile over that of the pacer's quiet windows,
	// and the most one batch's round trip may take (default DefaultBudget).
	Budget time.Duration
	// MinBatch and MaxBatch bound the keys per batch (defaults
	// DefaultMinBatch, DefaultMaxBatch).
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
	// may take (default DefaultMaxShare): on a small machine Redis and the
	// application need the CPUs too, so even on an idle server a batch is
	// followed by a pause of rtt*(1-MaxShare)/MaxShare.
	MaxShare float64
	// CalibrateEvery and CalibrateFor: every CalibrateEvery the batches are
	// held for CalibrateFor to measure the probe without this maintenance
	// (defaults DefaultCalibrateEvery, DefaultCalibrateFor: a tenth of the
	// time).
	CalibrateEvery, CalibrateFor time.Duration
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
	return c
}

// FromConfig is the Config of the `pace:` block (pacing disabled is the
// caller's business: it then runs without a Pacer).
func FromConfig(c config.PaceConfig) Config {
	return Config{Budget: c.LatencyBudget, MinBatch: c.MinBatch, MaxBatch: c.MaxBatch,
		MaxPause: c.MaxPause, ProbeInterval: c.ProbeInterval, MaxShare: c.MaxShare}
}

// Stats is what a Pacer is doing, for a job's progress and result.
type Stats struct {
	// Batch is the current number of keys per batch.
	Batch int `json:"batch"`
	// KeysPerS is the recent rate (keys per second, last control windows).
	KeysPerS float64 `json:"keys_per_s"`
	// TargetKeysPerS is the rate the rule currently allows.
	TargetKeysPerS float64 `json:"target_keys_per_s"`
	// AddedLatencyMS is the latency the probe saw above its quiet windows
	// (95th percentiles of the last decision), in milliseconds.
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

	mu        sync.Mutex
	target    float64 // keys per second the rule allows
	lastRTT   time.Duration
	holdCap   float64 // keys whose round trip fits in the budget; 0 = unknown
	perKey    []float64
	pause     time.Duration
	resumeAt  time.Time       // no batch starts before (pause after the last batch)
	quietFrom time.Time       // the current quiet window's probes count from here
	quietTo   time.Time       // batches are held until here
	nextQuiet time.Time       // when the next quiet window starts
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
// The first batches wait for one quiet window (CalibrateFor), so that the
// probe knows what Redis costs before the maintenance starts.
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

// newPacer is the rule's state at now, without a probe.
func newPacer(cfg Config, now time.Time) *Pacer {
	return &Pacer{cfg: cfg, target: startRate(cfg), lastCtl: now,
		quietFrom: now, quietTo: now.Add(cfg.CalibrateFor), nextQuiet: now.Add(cfg.CalibrateEvery)}
}

// startRate is where the rate starts: a tenth of MaxBatch keys per
// millisecond (100,000 keys/s by default); the rule takes it up or down
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
	if p.holdCap > 0 {
		b = min(b, p.holdCap)
	}
	return int(math.Max(float64(p.cfg.MinBatch), b))
}

// Wait sleeps until the next batch may start (the pause after the last
// one, or the end of a quiet window), or until ctx ends.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	for {
		p.mu.Lock()
		now := time.Now()
		until := p.resumeAt
		if now.Before(p.quietTo) && p.quietTo.After(until) {
			until = p.quietTo
		}
		p.mu.Unlock()
		d := until.Sub(now)
		if d <= 0 {
			return ctx.Err()
		}
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
// sets the pause before the next one from the allowed rate.
func (p *Pacer) Observe(n int, rtt time.Duration) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
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
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
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

func (p *Pacer) probeLoop(ctx context.Context) {
	defer close(p.done)
	probe := time.NewTicker(p.cfg.ProbeInterval)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
		}
		pctx, cancel := context.WithTimeout(ctx, max(p.cfg.MaxPause, time.Second))
		start := time.Now()
		err := p.rdb.Ping(pctx).Err()
		rtt := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			rtt = p.cfg.MaxPause // no answer in time: as bad as it gets
		}
		p.mu.Lock()
		p.probeLocked(start, rtt)
		p.mu.Unlock()
	}
}

// quietSettle is how long after a quiet window starts its probes count: a
// batch sent just before may still hold Redis.
const quietSettle = 10 * time.Millisecond

// quietKeep bounds the quiet probes kept (about five windows by default).
const quietKeep = 100

// epochProbes is how many fresh probes a decision needs: their 95th
// percentile is the second slowest.
const epochProbes = 40

// maxProbes bounds one epoch's samples.
const maxProbes = 4096

// probeLocked records one probe sent at start that took rtt, opens and
// closes quiet windows, and applies the rule when an epoch is complete.
func (p *Pacer) probeLocked(start time.Time, rtt time.Duration) {
	if p.floor == 0 || rtt < p.floor {
		p.floor = rtt
	}
	switch {
	case start.Before(p.quietTo):
		if !start.Before(p.quietFrom.Add(quietSettle)) {
			p.quiet = append(p.quiet, rtt)
			if len(p.quiet) > quietKeep {
				p.quiet = p.quiet[1:]
			}
		}
	default:
		// The probe is sent one at a time, so a stall of many intervals
		// yields one sample. Add what the probes an open-loop client would
		// have sent during it saw (the rest of the stall each), or a long
		// stall would count no more than a short one.
		for d := rtt; d > 0 && len(p.active) < maxProbes; d -= p.cfg.ProbeInterval {
			p.active = append(p.active, d)
		}
	}
	now := start.Add(rtt)
	if !now.Before(p.nextQuiet) {
		p.quietFrom, p.quietTo = now, now.Add(p.cfg.CalibrateFor)
		p.nextQuiet = now.Add(p.cfg.CalibrateEvery)
	}
	if len(p.active) >= epochProbes && len(p.quiet) >= epochProbes/4 && now.Sub(p.lastCtl) >= p.cfg.ControlInterval {
		p.controlLocked(now)
	}
}

// probePercentile is the percentile of probes compared: the 75th moves
// with the share of time Redis is busy (what maintenance adds) but not with
// the rare stalls of a busy machine, and is stable over a few dozen probes.
const probePercentile = 75

// percentile returns the probePercentile-th percentile of a copy of d.
func percentile(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*probePercentile/100)]
}

// controlLocked applies the AIMD rule to the probes since the last decision.
func (p *Pacer) controlLocked(now time.Time) {
	p.excess = max(percentile(p.active)-percentile(p.quiet), 0)
	p.active = p.active[:0]
	if el := now.Sub(p.lastCtl).Seconds(); el > 0 {
		cur := float64(p.keys) / el
		p.rate = 0.5*p.rate + 0.5*cur
	}
	p.keys = 0
	p.lastCtl = now
	switch {
	case p.excess > p.cfg.Budget:
		p.slowdowns++
		p.target = max(p.minRate(), 0.7*min(p.target, max(p.rate, p.minRate())))
	case p.excess < p.cfg.Budget/2:
		p.target *= 1.5
	default:
		p.target *= 1.1
	}
	// Never run far ahead of what the batches achieve (a slow consumer, a
	// rate cap): growth resumes from the measured rate.
	if p.rate > 0 {
		p.target = min(p.target, max(4*p.rate, startRate(p.cfg)))
	}
}

type ctxKey struct{}

// NewContext returns ctx carrying p, so that the layers a maintenance job
// calls (scan.Each, invalidate's key batches, tag pruning, fenced writes)
// pace themselves with it without a parameter of their own.
func NewContext(ctx context.Context, p *Pacer) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the pacer NewContext stored in ctx, or nil.
func FromContext(ctx context.Context) *Pacer {
	p, _ := ctx.Value(ctxKey{}).(*Pacer)
	return p
}
