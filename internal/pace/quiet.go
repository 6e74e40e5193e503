package pace

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// idleWindow bounds the quiet window on an idle server: counting the other
// clients' commands needs no more (an application at IdleBelow sends about
// 8 in it), and a short window costs the maintenance little (4%).
const idleWindow = 40 * time.Millisecond

// firstWindow bounds the first quiet window, which every job waits for
// before its first batch: an application at 2,000 commands/s still sends
// about 20 in each half.
const firstWindow = 20 * time.Millisecond

// maxWindow bounds a quiet window whatever happens (a batch that never
// reports back, INFO that does not answer): the window then closes and the
// server counts as busy.
const maxWindow = time.Second

// quietSettle is how long after a quiet window opens its probes count as
// quiet: a SCAN page read ahead may still hold Redis.
const quietSettle = 10 * time.Millisecond

// quietKeep bounds the quiet probes kept (about five windows by default).
const quietKeep = 100

// epochProbes is how many fresh probes a decision needs.
const epochProbes = 40

// maxProbes bounds one epoch's samples.
const maxProbes = 4096

// step is what the probe goroutine does next.
type step int

const (
	stepPing  step = iota // a latency probe
	stepCount             // read total_commands_processed (a quiet window's start or end)
	stepNone              // nothing: idle between windows
)

func (p *Pacer) probeLoop(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		p.mu.Lock()
		s := p.stepLocked(time.Now())
		p.mu.Unlock()
		if s == stepCount {
			cctx, cancel := context.WithTimeout(ctx, maxWindow)
			n, err := commandsProcessed(cctx, p.rdb)
			cancel()
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.countedLocked(time.Now(), n, err)
			p.mu.Unlock()
			continue // the window's end may be due at once
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s == stepNone {
			continue
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

// windowLen is how long a quiet window counts commands: shortest for the
// first window (which every job waits for), short on an idle server,
// CalibrateFor (for the quiet probes) otherwise.
func (p *Pacer) windowLen() time.Duration {
	switch {
	case !p.measured:
		return min(p.cfg.CalibrateFor, firstWindow)
	case p.idle:
		return min(p.cfg.CalibrateFor, idleWindow)
	}
	return p.cfg.CalibrateFor
}

// stepLocked opens the quiet window when it is due and says whether the
// probe goroutine must read the command count now: once no batch is in
// flight (the window's start), half of windowLen later and at its end. Between
// windows on an idle server nothing is sent: no latency to hold, and
// another job's pacer must not count the probes as an application.
func (p *Pacer) stepLocked(now time.Time) step {
	if !p.open {
		if now.Before(p.nextQuiet) {
			if p.idle {
				return stepNone
			}
			return stepPing
		}
		p.open, p.quietFrom, p.counting = true, now, false
	}
	switch {
	case now.Sub(p.quietFrom) > maxWindow:
		p.closeLocked(now, -1)
	case !p.counting && p.inflight == 0:
		return stepCount
	case p.counting && !p.halfDone && now.Sub(p.countFrom) >= p.windowLen()/2:
		return stepCount
	case p.counting && p.halfDone && now.Sub(p.halfAt) >= p.windowLen()/2:
		return stepCount
	}
	return stepPing
}

// countedLocked takes a reading n of total_commands_processed at now (err:
// none could be read): the window's first reading starts the count, the
// second ends its first half, the third ends the window with the other
// clients' rate.
func (p *Pacer) countedLocked(now time.Time, n int64, err error) {
	if !p.open {
		return
	}
	if err != nil {
		p.closeLocked(now, -1)
		return
	}
	switch {
	case !p.counting:
		p.counting, p.halfDone, p.countFrom, p.count0, p.ownCmds = true, false, now, n, 0
	case !p.halfDone:
		// Redis counts a command once it has run: a reading holds the
		// previous INFO, not itself.
		p.firstHalf = othersRate(n-p.count0, p.ownCmds+1, now.Sub(p.countFrom))
		p.halfDone, p.halfAt, p.count0, p.ownCmds = true, now, n, 0
	default:
		// The smaller of the two halves: a burst of the worker's own
		// background (heartbeats of every server at once) fills one half,
		// an application keeps both busy.
		p.closeLocked(now, min(p.firstHalf, othersRate(n-p.count0, p.ownCmds+1, now.Sub(p.halfAt))))
	}
}

// othersRate is the other clients' commands per second: delta commands
// processed over elapsed, of which own were the pacer's.
func othersRate(delta, own int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return -1
	}
	return float64(max(delta-own, 0)) / elapsed.Seconds()
}

// closeLocked ends the quiet window with the other clients' rate (-1:
// unknown), sets the mode and releases the batches.
func (p *Pacer) closeLocked(now time.Time, others float64) {
	p.others, p.measured = others, true
	p.setModeLocked(now, others >= 0 && others <= p.cfg.IdleBelow)
	p.open, p.counting = false, false
	p.quietFor += now.Sub(p.quietFrom)
	p.nextQuiet = now.Add(p.cfg.CalibrateEvery)
	close(p.wake)
	p.wake = make(chan struct{})
}

// setModeLocked switches between idle (batches of MaxBatch back to back)
// and busy (the AIMD rule, starting again from startRate).
func (p *Pacer) setModeLocked(now time.Time, idle bool) {
	if idle == p.idle {
		return
	}
	if p.idle {
		p.idleFor += now.Sub(p.modeSince)
	} else {
		p.busyFor += now.Sub(p.modeSince)
	}
	p.idle, p.modeSince = idle, now
	p.active = p.active[:0]
	if idle {
		p.pause, p.resumeAt = 0, time.Time{}
		return
	}
	p.target = startRate(p.cfg)
	p.lastCtl, p.keys = now, 0
}

// commandsProcessed sums total_commands_processed (INFO stats) over the
// server, or over every master of a cluster.
func commandsProcessed(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		var sum atomic.Int64
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := infoCommands(ctx, m)
			sum.Add(n)
			return err
		})
		return sum.Load(), err
	}
	return infoCommands(ctx, rdb)
}

func infoCommands(ctx context.Context, c redis.Cmdable) (int64, error) {
	info, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	return parseCommands(info)
}

// parseCommands reads total_commands_processed from an INFO reply.
func parseCommands(info string) (int64, error) {
	const field = "total_commands_processed:"
	i := strings.Index(info, field)
	if i < 0 {
		return 0, fmt.Errorf("pace: INFO stats has no %s", strings.TrimSuffix(field, ":"))
	}
	v := info[i+len(field):]
	if j := strings.IndexAny(v, "\r\n"); j >= 0 {
		v = v[:j]
	}
	return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
}

// probeLocked records one probe sent at start that took rtt: a quiet probe
// inside a counting window (and one of the pacer's own commands), an active
// one while busy; and applies the rule when an epoch is complete.
func (p *Pacer) probeLocked(start time.Time, rtt time.Duration) {
	if p.floor == 0 || rtt < p.floor {
		p.floor = rtt
	}
	switch {
	case p.open:
		if p.counting {
			p.ownCmds++
		}
		if p.counting && !start.Before(p.quietFrom.Add(quietSettle)) {
			p.quiet = append(p.quiet, rtt)
			if len(p.quiet) > quietKeep {
				p.quiet = p.quiet[1:]
			}
		}
	case !p.idle:
		// The probe is sent one at a time, so a stall of many intervals
		// yields one sample. Add what the probes an open-loop client would
		// have sent during it saw (the rest of the stall each), or a long
		// stall would count no more than a short one.
		for d := rtt; d > 0 && len(p.active) < maxProbes; d -= p.cfg.ProbeInterval {
			p.active = append(p.active, d)
		}
	}
	now := start.Add(rtt)
	if now.Sub(p.lastCtl) < p.cfg.ControlInterval {
		return
	}
	if p.idle {
		p.measureRateLocked(now)
		return
	}
	if len(p.active) >= epochProbes && len(p.quiet) >= epochProbes/4 {
		p.controlLocked(now)
	}
}

// measureRateLocked updates the measured rate with the keys since the last
// measurement.
func (p *Pacer) measureRateLocked(now time.Time) {
	if el := now.Sub(p.lastCtl).Seconds(); el > 0 {
		p.rate = 0.5*p.rate + 0.5*float64(p.keys)/el
	}
	p.keys = 0
	p.lastCtl = now
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
	p.measureRateLocked(now)
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
