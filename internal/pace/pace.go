// Package pace paces maintenance that walks or rewrites many keys (pattern
// and tag invalidation, tag pruning, session cleanup, rate-limit pruning,
// warm_all writes) by what Redis is doing, so that the application sharing
// the server keeps its latency.
//
// A fixed rate cap does not protect the application: Redis runs one command
// at a time, so a batch of 1,000 keys holds every other client for about a
// millisecond whatever the rate, and the application's p99 is made of those
// waits. A Pacer controls the two things that matter:
//
//   - how long one command holds Redis: the batch size, and
//   - how much of the time Redis is busy with maintenance: the pause
//     between batches.
//
// It measures what other clients see with a probe: a PING on a connection
// of its own every ProbeInterval, concurrent with the batches. The probe's
// round trip above its recent floor is the latency the maintenance (and
// anything else loading Redis or the machine) adds to an application's
// command. Every ControlInterval it compares the window's high percentile of
// that added latency (75th percentile) with Budget and applies an AIMD rule: above the budget,
// halve the batch and double the pause (multiplicative decrease); below,
// shorten the pause (by a quarter, at least MaxPause/100), then grow the batch by a tenth of MaxBatch (additive
// increase). The batch is also capped so that its own round trip, measured
// on every batch, stays under the budget. On an idle server the probe sees
// only the maintenance's own short commands, the pause falls to zero and the
// batches run back to back; while an application loads the server the pause
// grows until the probe's latency is back under the budget, and when the load
// goes away the pace climbs again.
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
)

// Defaults used when a Config field is zero.
const (
	DefaultBudget          = 500 * time.Microsecond
	DefaultMinBatch        = 20
	DefaultMaxBatch        = 1000
	DefaultMaxPause        = 50 * time.Millisecond
	DefaultProbeInterval   = 5 * time.Millisecond
	DefaultControlInterval = 100 * time.Millisecond
)

// Config configures a Pacer. The zero value takes every default.
type Config struct {
	// Budget is the latency maintenance may add to other clients' commands,
	// as seen by the probe at the window's 75th percentile (default
	// DefaultBudget).
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
	// ControlInterval is how often the rule adjusts batch and pause (default
	// DefaultControlInterval).
	ControlInterval time.Duration
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
	case c.MaxPause < 0 || c.ProbeInterval < 0 || c.ControlInterval < 0:
		return errors.New("pace: max_pause, probe_interval and control_interval must not be negative")
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
	return c
}

// Stats is what a Pacer is doing, for a job's progress and result.
type Stats struct {
	// Batch is the current number of keys per batch.
	Batch int `json:"batch"`
	// KeysPerS is the recent rate (keys per second, last control windows).
	KeysPerS float64 `json:"keys_per_s"`
	// AddedLatencyMS is the latency the probe saw above its floor (75th
	// percentile of the last window), in milliseconds.
	AddedLatencyMS float64 `json:"added_latency_ms"`
	// BudgetMS is the configured budget, in milliseconds.
	BudgetMS float64 `json:"budget_ms"`
	// RoundTripMS is the round trip of the last batch, in milliseconds.
	RoundTripMS float64 `json:"round_trip_ms"`
	// PauseMS is the current pause between batches, in milliseconds.
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
	batch     float64
	pause     time.Duration
	lastRTT   time.Duration
	holdCap   float64 // keys whose round trip fits in the budget; 0 = unknown
	perKey    []float64
	probes    []time.Duration
	windowMin time.Duration   // smallest real probe round trip of the window
	floors    []time.Duration // minimum probe RTT of recent windows
	excess    time.Duration
	keys      int64 // keys observed since the last control step
	rate      float64
	slowdowns int64
}

// New validates cfg and starts a pacer whose probe PINGs rdb until Stop.
func New(rdb redis.UniversalClient, cfg Config) (*Pacer, error) {
	if rdb == nil {
		return nil, errors.New("pace: nil Redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pacer{cfg: cfg, rdb: rdb, stop: cancel, done: make(chan struct{}),
		batch: float64(max(cfg.MinBatch, cfg.MaxBatch/10))}
	go p.probeLoop(ctx)
	return p, nil
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
	b := p.batch
	if p.holdCap > 0 {
		b = min(b, p.holdCap)
	}
	return int(math.Max(float64(p.cfg.MinBatch), math.Min(b, float64(p.cfg.MaxBatch))))
}

// Wait sleeps for the current pause, or until ctx ends.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	p.mu.Lock()
	d := p.pause
	p.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Observe records that a batch of n keys took rtt (its round trips).
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
	floor := p.floorLocked()
	perKey := float64(max(rtt-floor, time.Microsecond)) / float64(n)
	p.perKey = append(p.perKey, perKey)
	if len(p.perKey) > perKeyBatches {
		p.perKey = p.perKey[1:]
	}
	p.holdCap = float64(p.cfg.Budget) / slices.Min(p.perKey)
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
	last := time.Now()
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
		// The probe is sent one at a time, so a stall of many intervals
		// yields one sample. Add what the probes an open-loop client would
		// have sent during it saw (the rest of the stall each), or a long
		// stall would count no more than a short one.
		if p.windowMin == 0 || rtt < p.windowMin {
			p.windowMin = rtt
		}
		for d := rtt; d > 0 && len(p.probes) < maxProbes; d -= p.cfg.ProbeInterval {
			p.probes = append(p.probes, d)
		}
		if now := time.Now(); now.Sub(last) >= p.cfg.ControlInterval {
			p.controlLocked(now.Sub(last))
			last = now
		}
		p.mu.Unlock()
	}
}

// floorLocked is the smallest probe round trip of recent windows: what a
// command costs with nothing in its way.
func (p *Pacer) floorLocked() time.Duration {
	if len(p.floors) == 0 {
		return 0
	}
	return slices.Min(p.floors)
}

// maxProbes bounds one window's samples.
const maxProbes = 4096

// floorWindows is how many windows the floor remembers (2 s by default).
const floorWindows = 20

// probePercentile is the percentile of a window's probes compared with the
// budget. The 75th moves with the share of time Redis spends on the
// maintenance's batches (and on any other load) but not with the rare stalls
// of a busy machine, which the maintenance neither causes nor cures.
const probePercentile = 75

// controlLocked applies the AIMD rule to the window of probes that ended.
func (p *Pacer) controlLocked(elapsed time.Duration) {
	if len(p.probes) == 0 {
		return
	}
	slices.Sort(p.probes)
	p.floors = append(p.floors, p.windowMin) // real round trips only
	p.windowMin = 0
	if len(p.floors) > floorWindows {
		p.floors = p.floors[1:]
	}
	high := p.probes[min(len(p.probes)-1, len(p.probes)*probePercentile/100)]
	p.excess = high - p.floorLocked()
	p.probes = p.probes[:0]

	cur := float64(p.keys) / elapsed.Seconds()
	p.rate = 0.5*p.rate + 0.5*cur
	p.keys = 0

	step := max(p.cfg.MaxPause/100, 100*time.Microsecond)
	switch {
	case p.excess > p.cfg.Budget:
		p.slowdowns++
		p.batch = max(float64(p.cfg.MinBatch), float64(p.batchLocked())/2)
		p.pause = min(max(2*p.pause, step), p.cfg.MaxPause)
	case p.pause > 0:
		// Back up quickly once the load is gone: a quarter of the pause, at
		// least one step.
		p.pause = max(p.pause-max(step, p.pause/4), 0)
	default:
		p.batch = min(p.batch+float64(max(p.cfg.MaxBatch/10, 1)), float64(p.cfg.MaxBatch))
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
