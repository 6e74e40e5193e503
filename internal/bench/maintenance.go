package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/pace"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// Maintenance kinds measured by Maintenance.
const (
	MaintPattern       = "invalidate_pattern"
	MaintPatternFenced = "invalidate_pattern_fenced"
	MaintTag           = "invalidate_tag"
	MaintSessions      = "session_cleanup"
	MaintRateLimits    = "ratelimit_prune"
)

// MaintenanceKinds lists every kind, in the order they run.
var MaintenanceKinds = []string{MaintPattern, MaintPatternFenced, MaintTag, MaintSessions, MaintRateLimits}

// MaintenanceOptions configure the maintenance scenario. Zero fields take
// the defaults noted.
type MaintenanceOptions struct {
	// Keys is how many keys each maintenance run walks (default 1,000,000).
	Keys int
	// AppRate is the application loop's HGETALL rate, requests per second
	// (default 2,000).
	AppRate int
	// Baseline is how long the application loop is measured alone before
	// each run (default 2s).
	Baseline time.Duration
	// Rounds is how many times each kind runs unpaced and paced (default 1);
	// figures are medians over the rounds.
	Rounds int
	// Kinds are the maintenance kinds to run (default MaintenanceKinds).
	Kinds []string
	// Pace is the pacing of the paced runs (default: the worker's defaults,
	// config.Default().Pace).
	Pace *config.PaceConfig
	// Logger receives progress lines (default: discard).
	Logger *slog.Logger
}

const maintPrefix = "ckbench:mnt:"

func (o MaintenanceOptions) withDefaults() (MaintenanceOptions, error) {
	if o.Keys < 0 || o.AppRate < 0 || o.Rounds < 0 || o.Baseline < 0 {
		return o, fmt.Errorf("%w: bench maintenance: --keys, --app-rate, --baseline and --rounds must not be negative", ErrInvalidOptions)
	}
	if o.Keys == 0 {
		o.Keys = 1_000_000
	}
	if o.AppRate == 0 {
		o.AppRate = 2000
	}
	if o.Baseline == 0 {
		o.Baseline = 2 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if len(o.Kinds) == 0 {
		o.Kinds = MaintenanceKinds
	}
	for _, k := range o.Kinds {
		if !slices.Contains(MaintenanceKinds, k) {
			return o, fmt.Errorf("%w: bench maintenance: unknown kind %q (kinds: %v)", ErrInvalidOptions, k, MaintenanceKinds)
		}
	}
	if o.Pace == nil {
		p := config.Default().Pace
		o.Pace = &p
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Maintenance measures what maintenance costs an application: an
// application-style loop (HGETALL of small hashes at AppRate requests/s,
// four goroutines on a client of its own) runs all along; for each kind and
// pacing (off, then on), Keys keys are seeded, the loop is measured alone for
// Baseline, then during the maintenance run. Each result gives the loop's
// p50/p99 alone and during, the ratio of the p99s (the figure the pacing
// must keep under 2x) and the maintenance's keys/s. Paced pattern
// invalidation also runs once with the loop stopped (keys/s on an idle
// server). The maintenance runs the worker's own code (invalidate.Pattern,
// invalidate.Tag, session.Cleanup, ratelimit.Prune) with a
// pacer built from opts.Pace as the worker builds it. It writes keys under
// "ckbench:mnt:" and one tag set, and deletes them before and after; run it
// on a server of its own.
func Maintenance(ctx context.Context, rdb redis.UniversalClient, appClient redis.UniversalClient, opts MaintenanceOptions) ([]Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	k := keys.Default()
	cleanup := func(ctx context.Context) error {
		for _, m := range []string{maintPrefix + "*", k.Fence(maintPrefix)[:len(k.Fence(maintPrefix))-1] + "*", k.Tag("ckbench*"), k.CacheFence(benchCache, ""), k.CacheFence(benchCache, "*")} {
			if err := unlinkMatching(ctx, rdb, m); err != nil {
				return err
			}
		}
		return rdb.Del(ctx, k.TagFence(benchTag)).Err()
	}
	defer func() { _ = cleanup(context.WithoutCancel(ctx)) }()
	if err := cleanup(ctx); err != nil {
		return nil, err
	}
	app, err := startApp(ctx, appClient, opts.AppRate)
	if err != nil {
		return nil, err
	}
	defer app.stop()

	type figures struct{ baseP50, baseP99, p50, p99, keysPerS []float64 }
	var results []Result
	for _, kind := range opts.Kinds {
		var fig [2]figures
		var lastPace pace.Stats
		for round := 0; round < opts.Rounds; round++ {
			for v, paced := range []bool{false, true} {
				if err := seedMaintenance(ctx, rdb, kind, opts.Keys); err != nil {
					return nil, err
				}
				time.Sleep(300 * time.Millisecond) // let the seeding's load settle
				b0 := time.Now()
				time.Sleep(opts.Baseline)
				base := app.between(b0, time.Now())
				var p *pace.Pacer
				if paced {
					if p, err = pace.New(rdb, paceConfigOf(*opts.Pace)); err != nil {
						return nil, err
					}
				}
				m0 := time.Now()
				n, err := runMaintenance(pace.NewContext(ctx, p), rdb, kind, opts.Keys)
				m1 := time.Now()
				if p != nil {
					lastPace = p.Stats()
					p.Stop()
				}
				if err != nil {
					return nil, err
				}
				during := app.between(m0, m1)
				f := &fig[v]
				f.baseP50 = append(f.baseP50, pct(base, 50))
				f.baseP99 = append(f.baseP99, pct(base, 99))
				f.p50 = append(f.p50, pct(during, 50))
				f.p99 = append(f.p99, pct(during, 99))
				f.keysPerS = append(f.keysPerS, float64(n)/m1.Sub(m0).Seconds())
				opts.Logger.Info("bench maintenance run", slog.String("kind", kind), slog.Bool("paced", paced), slog.Int("round", round+1),
					slog.Int64("keys", n), slog.Float64("keys_per_s", round1(float64(n)/m1.Sub(m0).Seconds())),
					slog.Float64("base_p99_ms", pct(base, 99)), slog.Float64("during_p99_ms", pct(during, 99)),
					slog.Int("app_requests_during", len(during)))
				if err := cleanup(ctx); err != nil {
					return nil, err
				}
			}
		}
		for v, name := range []string{"unpaced", "paced"} {
			f := fig[v]
			r := Result{
				Scenario:        "maintenance_" + kind + "_" + name,
				CachekeeperPerS: round(medianOf(f.keysPerS)),
				Baseline:        "application p99 alone, same run",
			}
			if b := medianOf(f.baseP99); b > 0 {
				r.Ratio = math.Round(medianOf(f.p99)/b*100) / 100
			}
			r.Extra = map[string]any{
				"kind": kind, "paced": v == 1, "keys": opts.Keys, "rounds": opts.Rounds, "app_rate": opts.AppRate,
				"baseline_p50_ms": medianOf(f.baseP50), "baseline_p99_ms": medianOf(f.baseP99),
				"during_p50_ms": medianOf(f.p50), "during_p99_ms": medianOf(f.p99),
				"keys_per_s": round(medianOf(f.keysPerS)),
			}
			if v == 1 {
				r.Extra["latency_budget_ms"] = float64(opts.Pace.LatencyBudget.Microseconds()) / 1000
				r.Extra["last_batch"] = lastPace.Batch
				r.Extra["last_pause_ms"] = lastPace.PauseMS
				r.Extra["slowdowns"] = lastPace.Slowdowns
			}
			results = append(results, r)
		}
		if kind == MaintPattern {
			// Paced, with the application stopped: the pace on an idle server.
			if err := seedMaintenance(ctx, rdb, kind, opts.Keys); err != nil {
				return nil, err
			}
			app.pause(true)
			p, err := pace.New(rdb, paceConfigOf(*opts.Pace))
			if err != nil {
				return nil, err
			}
			m0 := time.Now()
			n, err := runMaintenance(pace.NewContext(ctx, p), rdb, kind, opts.Keys)
			d := time.Since(m0)
			st := p.Stats()
			p.Stop()
			app.pause(false)
			if err != nil {
				return nil, err
			}
			if err := cleanup(ctx); err != nil {
				return nil, err
			}
			idle := float64(n) / d.Seconds()
			opts.Logger.Info("bench maintenance idle run", slog.String("kind", kind), slog.Float64("keys_per_s", round1(idle)))
			for i := range results {
				if results[i].Scenario == "maintenance_"+MaintPattern+"_paced" {
					results[i].Extra["idle_keys_per_s"] = round(idle)
					results[i].Extra["idle_last_batch"] = st.Batch
				}
			}
		}
	}
	return results, nil
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func paceConfigOf(c config.PaceConfig) pace.Config {
	if c.Disabled {
		c = config.Default().Pace
	}
	return pace.Config{Budget: c.LatencyBudget, MinBatch: c.MinBatch, MaxBatch: c.MaxBatch, MaxPause: c.MaxPause, ProbeInterval: c.ProbeInterval}
}

// pct is the p-th percentile of sorted latencies, in milliseconds.
func pct(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, len(sorted)*p/100)
	return math.Round(float64(sorted[i].Microseconds())) / 1000
}

func maintKeyPrefix(kind string) string { return maintPrefix + kind + ":" }

const benchTag = "ckbench-maint"

// seedMaintenance writes n keys for kind.
func seedMaintenance(ctx context.Context, rdb redis.UniversalClient, kind string, n int) error {
	prefix := maintKeyPrefix(kind)
	switch kind {
	case MaintPattern, MaintPatternFenced:
		return seedHashes(ctx, rdb, prefix, n)
	case MaintTag:
		if err := seedHashes(ctx, rdb, prefix, n); err != nil {
			return err
		}
		set := keys.Default().Tag(benchTag)
		const batch = 5000
		for lo := 0; lo < n; lo += batch {
			members := make([]any, 0, batch)
			for i := lo; i < min(lo+batch, n); i++ {
				members = append(members, prefix+strconv.Itoa(i))
			}
			if err := rdb.SAdd(ctx, set, members...).Err(); err != nil {
				return fmt.Errorf("bench maintenance: seed tag set: %w", err)
			}
		}
		return nil
	case MaintSessions:
		old := session.FormatTime(time.Now().Add(-72 * time.Hour))
		const batch = 5000
		for lo := 0; lo < n; lo += batch {
			pipe := rdb.Pipeline()
			for i := lo; i < min(lo+batch, n); i++ {
				pipe.HSet(ctx, prefix+strconv.Itoa(i), "user_id", "u"+strconv.Itoa(i%1000), "created_at", old, "last_seen", old)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("bench maintenance: seed sessions: %w", err)
			}
		}
		return nil
	case MaintRateLimits:
		return seedRateLimits(ctx, rdb, prefix, n, 4, 1000)
	}
	return fmt.Errorf("bench maintenance: unknown kind %q", kind)
}

// runMaintenance runs kind over the keys seedMaintenance wrote, paced by the
// pacer ctx carries (if any), and returns how many keys it handled.
func runMaintenance(ctx context.Context, rdb redis.UniversalClient, kind string, n int) (int64, error) {
	prefix := maintKeyPrefix(kind)
	k := keys.Default()
	var got int64
	switch kind {
	case MaintPattern, MaintPatternFenced:
		caches := map[string]invalidate.Cache{}
		if kind == MaintPatternFenced {
			caches[benchCache] = invalidate.Cache{Key: prefix + "{id}"}
		}
		inv, err := invalidate.New(rdb, k, time.Hour, caches)
		if err != nil {
			return 0, err
		}
		res, err := inv.Pattern(ctx, invalidate.PatternOptions{Pattern: prefix + "*", Sample: 100})
		if err != nil {
			return 0, err
		}
		got = res.Deleted
	case MaintTag:
		inv, err := invalidate.New(rdb, k, time.Hour, map[string]invalidate.Cache{benchCache: {Key: prefix + "{id}"}})
		if err != nil {
			return 0, err
		}
		res, err := inv.Tag(ctx, benchTag, "bench", 100)
		if err != nil {
			return 0, err
		}
		got = res.Deleted
	case MaintSessions:
		cfg := config.DefaultSessions()
		cfg.Key = prefix + "{token}"
		cfg.Index = ""
		rep, err := session.Cleanup(ctx, rdb, cfg, tasks.SessionCleanupArgs{})
		if err != nil {
			return 0, err
		}
		got = rep.Expired
	case MaintRateLimits:
		cfg := config.DefaultRateLimits()
		cfg.Key = prefix + "{client}"
		cfg.Window = pruneWindow
		rep, err := ratelimit.Prune(ctx, rdb, cfg, tasks.RateLimitPruneArgs{})
		if err != nil {
			return 0, err
		}
		got = rep.Scanned
	}
	// Half the rate-limit sets carry a TTL of the window, as applications
	// leave them; a slow (paced, loaded) run may see some expire first.
	if got != int64(n) && (kind != MaintRateLimits || got < int64(n/2) || got > int64(n)) {
		return got, fmt.Errorf("bench maintenance: %s handled %d keys, want %d", kind, got, n)
	}
	return got, nil
}

// appLoop is the application: HGETALL of small hashes at a fixed rate,
// every request's latency recorded with its start time.
type appLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	paused atomic.Bool

	mu      sync.Mutex
	samples []appSample
}

type appSample struct {
	at  time.Time
	lat time.Duration
}

const appWorkers = 4

func startApp(ctx context.Context, rdb redis.UniversalClient, rate int) (*appLoop, error) {
	pipe := rdb.Pipeline()
	for i := 0; i < 1000; i++ {
		id := strconv.Itoa(i)
		pipe.HSet(ctx, maintPrefix+"app:"+id, "id", id, "email", "user"+id+"@example.com", "name", "User "+id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("bench maintenance: seed the application's hashes: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &appLoop{cancel: cancel}
	interval := time.Duration(float64(time.Second) * appWorkers / float64(rate))
	for w := 0; w < appWorkers; w++ {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			next := time.Now().Add(time.Duration(w) * interval / appWorkers)
			for i := w; ctx.Err() == nil; i += appWorkers {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				if a.paused.Load() {
					continue
				}
				start := time.Now()
				err := rdb.HGetAll(ctx, maintPrefix+"app:"+strconv.Itoa(i%1000)).Err()
				lat := time.Since(start)
				if err != nil {
					continue
				}
				a.mu.Lock()
				a.samples = append(a.samples, appSample{start, lat})
				a.mu.Unlock()
				if behind := time.Since(next); behind > time.Second {
					next = time.Now() // do not burst to catch up after a stall
				}
			}
		}()
	}
	return a, nil
}

func (a *appLoop) pause(on bool) { a.paused.Store(on) }

func (a *appLoop) stop() {
	a.cancel()
	a.wg.Wait()
}

// between returns the sorted latencies of requests started in [from, to).
func (a *appLoop) between(from, to time.Time) []time.Duration {
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
