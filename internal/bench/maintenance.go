package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
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
	// AppCommand, when set, runs the application loop as that process
	// (`cachekeeper bench app-load ...`, AppLoad's protocol) instead of in
	// this one; appClient is then not used.
	AppCommand []string
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

// Maintenance measures what maintenance costs an application, and what
// pacing costs the maintenance. An application-style loop (HGETALL of
// small hashes at AppRate requests/s, four goroutines, in a process of its
// own when AppCommand is set, else on appClient) runs all along. For each
// kind, each round:
//
//   - with the loop running, unpaced then paced: Keys keys are seeded, the
//     loop is measured alone for Baseline, then during the maintenance run;
//     the result gives the loop's p50/p99 alone and during, the ratio of the
//     p99s (the figure pacing must keep under 2x) and the keys/s;
//   - with the loop paused (an idle server), unpaced then paced: keys/s
//     only (idle_keys_per_s; the paced run's idle_of_unpaced is the figure
//     pacing must keep at 0.8 or more).
//
// Pattern invalidation also runs paced with the loop stopped half-way
// (scenario maintenance_invalidate_pattern_app_stops: keys/s while the loop
// runs and after it stopped). The maintenance runs the worker's own code
// (invalidate.Pattern, invalidate.Tag, session.CleanupPaced,
// ratelimit.PrunePaced) with a pacer built from opts.Pace as the worker
// builds it. It writes keys under "ckbench:mnt:" and one tag set, and
// deletes them before and after; run it on a server of its own.
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
	app, err := startApp(ctx, appClient, opts.AppRate, opts.AppCommand)
	if err != nil {
		return nil, err
	}
	defer app.stop()
	m := &maintRun{opts: opts, rdb: rdb, app: app, cleanup: cleanup}

	var results []Result
	for _, kind := range opts.Kinds {
		var fig [2]maintFigures
		var lastPace pace.Stats
		for round := 0; round < opts.Rounds; round++ {
			for v, paced := range []bool{false, true} {
				st, err := m.withApp(ctx, kind, paced, round, &fig[v])
				if err != nil {
					return nil, err
				}
				if paced {
					lastPace = st
				}
			}
			app.pause(true)
			for v, paced := range []bool{false, true} {
				if err := m.idle(ctx, kind, paced, &fig[v]); err != nil {
					app.pause(false)
					return nil, err
				}
			}
			app.pause(false)
		}
		for v, name := range []string{"unpaced", "paced"} {
			results = append(results, fig[v].result(opts, kind, name, v == 1, lastPace, fig[0]))
		}
		if kind == MaintPattern {
			r, err := m.appStops(ctx)
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// maintRun is one Maintenance call's state.
type maintRun struct {
	opts    MaintenanceOptions
	rdb     redis.UniversalClient
	app     *appLoop
	cleanup func(context.Context) error
}

// maintFigures are one kind's and pacing's figures over the rounds.
type maintFigures struct{ baseP50, baseP99, p50, p99, keysPerS, idleKeysPerS []float64 }

// newPacer is the pacer of a paced run (nil for an unpaced one).
func (m *maintRun) newPacer(paced bool) (*pace.Pacer, error) {
	if !paced {
		return nil, nil
	}
	return pace.New(m.rdb, paceConfigOf(*m.opts.Pace))
}

// withApp runs kind once with the application loop running.
func (m *maintRun) withApp(ctx context.Context, kind string, paced bool, round int, f *maintFigures) (pace.Stats, error) {
	if err := seedMaintenance(ctx, m.rdb, kind, m.opts.Keys); err != nil {
		return pace.Stats{}, err
	}
	time.Sleep(300 * time.Millisecond) // let the seeding's load settle
	b0 := time.Now()
	time.Sleep(m.opts.Baseline)
	base := m.app.between(b0, time.Now())
	p, err := m.newPacer(paced)
	if err != nil {
		return pace.Stats{}, err
	}
	m0 := time.Now()
	n, err := runMaintenance(ctx, m.rdb, kind, m.opts.Keys, p, nil)
	m1 := time.Now()
	st := p.Stats()
	p.Stop()
	if err != nil {
		return st, err
	}
	during := m.app.between(m0, m1)
	f.baseP50 = append(f.baseP50, pct(base, 50))
	f.baseP99 = append(f.baseP99, pct(base, 99))
	f.p50 = append(f.p50, pct(during, 50))
	f.p99 = append(f.p99, pct(during, 99))
	f.keysPerS = append(f.keysPerS, float64(n)/m1.Sub(m0).Seconds())
	m.opts.Logger.Info("bench maintenance run", slog.String("kind", kind), slog.Bool("paced", paced), slog.Int("round", round+1),
		slog.Int64("keys", n), slog.Float64("keys_per_s", round1(float64(n)/m1.Sub(m0).Seconds())),
		slog.Float64("base_p99_ms", pct(base, 99)), slog.Float64("during_p99_ms", pct(during, 99)),
		slog.Int("app_requests_during", len(during)), slog.String("pace_mode", st.Mode), slog.Float64("busy_s", st.BusyS))
	return st, m.cleanup(ctx)
}

// idle runs kind once with the application loop paused.
func (m *maintRun) idle(ctx context.Context, kind string, paced bool, f *maintFigures) error {
	if err := seedMaintenance(ctx, m.rdb, kind, m.opts.Keys); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	p, err := m.newPacer(paced)
	if err != nil {
		return err
	}
	m0 := time.Now()
	n, err := runMaintenance(ctx, m.rdb, kind, m.opts.Keys, p, nil)
	d := time.Since(m0)
	st := p.Stats()
	p.Stop()
	if err != nil {
		return err
	}
	f.idleKeysPerS = append(f.idleKeysPerS, float64(n)/d.Seconds())
	m.opts.Logger.Info("bench maintenance idle run", slog.String("kind", kind), slog.Bool("paced", paced),
		slog.Float64("keys_per_s", round1(float64(n)/d.Seconds())), slog.Float64("seconds", round1(d.Seconds())),
		slog.String("pace_mode", st.Mode), slog.Float64("busy_s", st.BusyS), slog.Float64("quiet_s", st.QuietS))
	return m.cleanup(ctx)
}

// appStops runs paced pattern invalidation with the application loop
// running, and stops the loop once half the keys are deleted: the keys/s
// before and after show the pacer speeding up again.
func (m *maintRun) appStops(ctx context.Context) (Result, error) {
	if err := seedMaintenance(ctx, m.rdb, MaintPattern, m.opts.Keys); err != nil {
		return Result{}, err
	}
	time.Sleep(300 * time.Millisecond)
	p, err := m.newPacer(true)
	if err != nil {
		return Result{}, err
	}
	half := int64(m.opts.Keys / 2)
	var stoppedAt time.Time
	var stoppedKeys int64
	m0 := time.Now()
	n, err := runMaintenance(ctx, m.rdb, MaintPattern, m.opts.Keys, p, func(done int64) {
		if stoppedAt.IsZero() && done >= half {
			stoppedAt, stoppedKeys = time.Now(), done
			m.app.pause(true)
		}
	})
	m1 := time.Now()
	st := p.Stats()
	p.Stop()
	m.app.pause(false)
	if err != nil {
		return Result{}, err
	}
	if stoppedAt.IsZero() {
		stoppedAt, stoppedKeys = m1, n
	}
	with := float64(stoppedKeys) / stoppedAt.Sub(m0).Seconds()
	after := 0.0
	if d := m1.Sub(stoppedAt).Seconds(); d > 0 {
		after = float64(n-stoppedKeys) / d
	}
	m.opts.Logger.Info("bench maintenance app stops", slog.Float64("keys_per_s_with_app", round1(with)), slog.Float64("keys_per_s_after", round1(after)))
	r := Result{
		Scenario:        "maintenance_" + MaintPattern + "_app_stops",
		CachekeeperPerS: round(after),
		BaselinePerS:    round(with),
		Baseline:        "paced keys/s while the application loop ran (first half of the keys)",
		Extra: map[string]any{"kind": MaintPattern, "paced": true, "keys": m.opts.Keys, "keys_per_s_with_app": round(with),
			"keys_per_s_after_stop": round(after), "idle_s": st.IdleS, "busy_s": st.BusyS},
	}
	if with > 0 {
		r.Ratio = math.Round(after/with*100) / 100
	}
	return r, m.cleanup(ctx)
}

// result is the Result of one kind and pacing over the rounds; unpaced is
// the same kind's unpaced figures.
func (f maintFigures) result(opts MaintenanceOptions, kind, name string, paced bool, st pace.Stats, unpaced maintFigures) Result {
	r := Result{
		Scenario:        "maintenance_" + kind + "_" + name,
		CachekeeperPerS: round(medianOf(f.keysPerS)),
		Baseline:        "application p99 alone, same run",
	}
	if b := medianOf(f.baseP99); b > 0 {
		r.Ratio = math.Round(medianOf(f.p99)/b*100) / 100
	}
	r.Extra = map[string]any{
		"kind": kind, "paced": paced, "keys": opts.Keys, "rounds": opts.Rounds, "app_rate": opts.AppRate,
		"baseline_p50_ms": msRound(medianOf(f.baseP50)), "baseline_p99_ms": msRound(medianOf(f.baseP99)),
		"during_p50_ms": msRound(medianOf(f.p50)), "during_p99_ms": msRound(medianOf(f.p99)),
		"keys_per_s": round(medianOf(f.keysPerS)), "idle_keys_per_s": round(medianOf(f.idleKeysPerS)),
		"app_process": len(opts.AppCommand) > 0,
	}
	if paced {
		if u := medianOf(unpaced.idleKeysPerS); u > 0 {
			r.Extra["idle_of_unpaced"] = math.Round(medianOf(f.idleKeysPerS)/u*100) / 100
		}
		r.Extra["latency_budget_ms"] = float64(opts.Pace.LatencyBudget.Microseconds()) / 1000
		r.Extra["last_batch"] = st.Batch
		r.Extra["last_pause_ms"] = st.PauseMS
		r.Extra["slowdowns"] = st.Slowdowns
		r.Extra["last_target_keys_per_s"] = st.TargetKeysPerS
		r.Extra["max_share"] = opts.Pace.MaxShare
		r.Extra["busy_s"] = st.BusyS
		r.Extra["others_commands_per_s"] = st.OthersPerS
	}
	return r
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// msRound rounds milliseconds to the microsecond (a median of two is their
// mean, which prints with float noise otherwise).
func msRound(v float64) float64 { return math.Round(v*1000) / 1000 }

func paceConfigOf(c config.PaceConfig) pace.Config {
	if c.Disabled {
		c = config.Default().Pace
	}
	return pace.FromConfig(c)
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

// runMaintenance runs kind over the keys seedMaintenance wrote, paced by p
// (nil: unpaced), and returns how many keys it handled. progress, when set,
// is told the keys deleted so far (pattern invalidation only).
func runMaintenance(ctx context.Context, rdb redis.UniversalClient, kind string, n int, p *pace.Pacer, progress func(int64)) (int64, error) {
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
		opts := invalidate.PatternOptions{Pattern: prefix + "*", Sample: 100, Pacer: p}
		if progress != nil {
			opts.Progress = func(r invalidate.PatternResult) { progress(r.Deleted) }
		}
		res, err := inv.Pattern(ctx, opts)
		if err != nil {
			return 0, err
		}
		got = res.Deleted
	case MaintTag:
		inv, err := invalidate.New(rdb, k, time.Hour, map[string]invalidate.Cache{benchCache: {Key: prefix + "{id}"}})
		if err != nil {
			return 0, err
		}
		res, err := inv.Paced(p).Tag(ctx, benchTag, "bench", 100)
		if err != nil {
			return 0, err
		}
		got = res.Deleted
	case MaintSessions:
		cfg := config.DefaultSessions()
		cfg.Key = prefix + "{token}"
		cfg.Index = ""
		rep, err := session.CleanupPaced(ctx, rdb, cfg, tasks.SessionCleanupArgs{}, p)
		if err != nil {
			return 0, err
		}
		got = rep.Expired
	case MaintRateLimits:
		cfg := config.DefaultRateLimits()
		cfg.Key = prefix + "{client}"
		cfg.Window = pruneWindow
		rep, err := ratelimit.PrunePaced(ctx, rdb, cfg, tasks.RateLimitPruneArgs{}, p)
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
