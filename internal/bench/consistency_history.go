package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// outageGrace is how long after an injected fault ends its effects (a
// worker's backlog, a stream catching up) still count as the outage.
const outageGrace = time.Second

// history records every commit and every read with its time.
type history struct {
	mu      sync.Mutex
	commits map[string]map[int64]time.Time // key -> version -> when its UPDATE returned
	paths   map[string]string
	reads   []readRecord
	outages [][2]time.Time
}

type readRecord struct {
	key     string
	version int64
	at      time.Time
}

func newHistory() *history {
	return &history{commits: map[string]map[int64]time.Time{}, paths: map[string]string{}}
}

func (h *history) commit(key, path string, version int64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.commits[key]
	if m == nil {
		m = map[int64]time.Time{}
		h.commits[key] = m
	}
	m[version] = at
	h.paths[key] = path
}

func (h *history) read(key, path string, version int64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads = append(h.reads, readRecord{key: key, version: version, at: at})
	h.paths[key] = path
}

func (h *history) outage(from, to time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outages = append(h.outages, [2]time.Time{from, to.Add(outageGrace)})
}

// staleness returns how long before the read a newer version than the one
// it returned had committed (false: the read was not stale).
func (h *history) staleness(r readRecord) (time.Duration, bool) {
	var first time.Time
	for v, at := range h.commits[r.key] {
		if v > r.version && at.Before(r.at) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return r.at.Sub(first), true
}

func (h *history) inOutage(from, to time.Time) bool {
	for _, o := range h.outages {
		if from.Before(o[1]) && to.After(o[0]) {
			return true
		}
	}
	return false
}

// figures computes each path's writes, reads and staleness windows.
func (h *history) figures() map[string]*PathFigures {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]*PathFigures{}
	get := func(p string) *PathFigures {
		f := out[p]
		if f == nil {
			f = &PathFigures{Path: p}
			out[p] = f
		}
		return f
	}
	for key, m := range h.commits {
		get(h.paths[key]).Writes += len(m)
	}
	all, outside := map[string][]float64{}, map[string][]float64{}
	for _, r := range h.reads {
		p := h.paths[r.key]
		f := get(p)
		f.Reads++
		lag, stale := h.staleness(r)
		if !stale {
			continue
		}
		f.StaleReads++
		ms := float64(lag.Microseconds()) / 1000
		all[p] = append(all[p], ms)
		if !h.inOutage(r.at.Add(-lag), r.at) {
			outside[p] = append(outside[p], ms)
		}
	}
	for p, f := range out {
		f.P50Ms, f.P99Ms, f.MaxMs = percentile(all[p], 50), percentile(all[p], 99), maxOf(all[p])
		f.P99OutsideOutagesMs, f.MaxOutsideOutagesMs = percentile(outside[p], 99), maxOf(outside[p])
	}
	return out
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if x > m {
			m = x
		}
	}
	return m
}

// waitIdle waits, at most d, until no job is pending, active or retrying
// and the inbox is empty; it reports whether that happened.
func (c *checker) waitIdle(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		busy := 0
		for _, q := range c.e.queueOf {
			info, err := c.e.insp.GetQueueInfo(q)
			if err == nil {
				busy += info.Pending + info.Active + info.Retry
			}
		}
		if n, err := c.e.rdb.LLen(ctx, c.e.cfg.Inbox.Key).Result(); err == nil {
			busy += int(n)
		}
		if busy == 0 {
			return true
		}
		if time.Now().After(deadline) || !sleep(ctx, 20*time.Millisecond) {
			return false
		}
	}
}

// quiesce waits the quiescence, then until no job is pending, active or
// retrying (at most 60s), so every invalidation and warm has run.
func (c *checker) quiesce(ctx context.Context) error {
	if !sleep(ctx, c.o.Quiescence) {
		return ctx.Err()
	}
	if !c.waitIdle(ctx, 60*time.Second) {
		c.o.Logger.Warn("bench consistency: jobs still queued 60s after the run")
	}
	return ctx.Err()
}

// report compares every cached row with the database and adds the
// history's figures.
func (c *checker) report(ctx context.Context) (*ConsistencyReport, error) {
	figs := c.hist.figures()
	rep := &ConsistencyReport{Operations: int(c.ops.Load()), ReadPath: c.o.ReadPath}
	for _, cache := range []string{"item", "app"} {
		var rows []struct {
			ID      int64 `db:"id"`
			Version int64 `db:"version"`
		}
		if err := c.e.db.SelectContext(ctx, &rows, "SELECT id, version FROM "+c.tables[cache]+" ORDER BY id"); err != nil {
			return nil, err
		}
		pipe := c.e.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(rows))
		for i, r := range rows {
			cmds[i] = pipe.HGet(ctx, c.e.prefix+cache+":"+strconv.FormatInt(r.ID, 10), "version")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, r := range rows {
			s, err := cmds[i].Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			cached, perr := strconv.ParseInt(s, 10, 64)
			if err != nil || perr != nil || cached >= r.Version {
				continue
			}
			key := cache + ":" + strconv.FormatInt(r.ID, 10)
			path := PathStream
			if cache == "app" {
				path = appPaths[int(r.ID)%len(appPaths)]
			}
			f := figs[path]
			if f == nil {
				f = &PathFigures{Path: path}
				figs[path] = f
			}
			f.StaleAfterQuiescence++
			rep.StaleAfterQuiescence++
			if len(rep.StaleKeys) < 20 {
				rep.StaleKeys = append(rep.StaleKeys, fmt.Sprintf("%s cached v%d, database v%d", key, cached, r.Version))
			}
		}
	}
	for _, p := range append([]string{PathStream}, appPaths...) {
		if f, ok := figs[p]; ok {
			rep.Paths = append(rep.Paths, *f)
		}
	}
	if len(rep.StaleKeys) > 0 {
		c.o.Logger.Warn("bench consistency: stale after quiescence", slog.String("keys", strings.Join(rep.StaleKeys, "; ")))
	}
	return rep, nil
}

// PartEnv is what Parts.Start gets: the configuration of the run, the
// stream's, and the connections an in-process part uses.
type PartEnv struct {
	Config config.Config
	Stream changes.Config
	Redis  redis.UniversalClient
	DB     *sqlx.DB
	Client *tasks.Client
	Logger *slog.Logger
}

// InProcess runs the worker and the change stream in this process; its
// stop cancels them (a fast stop, not a crash: a Parts of real processes
// kills with real signals).
type InProcess struct{}

// Start implements Parts.
func (InProcess) Start(ctx context.Context, what string, env PartEnv) (func() error, error) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	stop := func() error { cancel(); return <-done }
	switch what {
	case "worker":
		w, err := worker.New(env.Config, worker.Deps{Redis: env.Redis, DB: env.DB, Client: env.Client, Registry: prometheus.NewRegistry()}, env.Logger)
		if err != nil {
			cancel()
			return nil, err
		}
		go func() { done <- w.Run(pctx) }()
		deadline := time.Now().Add(20 * time.Second)
		for !w.Ready() {
			if time.Now().After(deadline) {
				_ = stop()
				return nil, errors.New("bench consistency: the worker did not start within 20s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	case "changes":
		s, err := changes.New(env.Stream, env.Logger)
		if err != nil {
			cancel()
			return nil, err
		}
		go func() { done <- s.Run(pctx) }()
		if err := waitStreaming(ctx, s, done); err != nil {
			cancel()
			return nil, err
		}
	default:
		cancel()
		return nil, fmt.Errorf("bench consistency: unknown part %q", what)
	}
	return stop, nil
}

// running holds the started parts.
type running struct {
	c     *checker
	env   PartEnv
	mu    sync.Mutex
	stops map[string]func() error
}

func (r *running) start(ctx context.Context, what string) error {
	stop, err := r.c.o.Parts.Start(ctx, what, r.env)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.stops[what] = stop
	r.mu.Unlock()
	return nil
}

func (r *running) restart(ctx context.Context, what string) error {
	r.mu.Lock()
	stop := r.stops[what]
	delete(r.stops, what)
	r.mu.Unlock()
	if stop != nil {
		if err := stop(); err != nil {
			r.c.o.Logger.Debug("bench consistency: part stopped with an error", slog.String("part", what), slog.String("error", err.Error()))
		}
	}
	return r.start(ctx, what)
}

func (r *running) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for what, stop := range r.stops {
		_ = stop()
		delete(r.stops, what)
	}
}

// finalKeys are the rows written in the final stall.
const finalKeys = 8

// finalStall ends the run inside a stall, so that for some keys the last
// thing that happens is a commit delivered to the change stream while no
// other session can see it: writes of finalKeys rows block in the stall,
// and readers and warms read those keys meanwhile (a miss asks for a
// coalesced warm, which reads the old row). After the stall no later write
// comes to repair what the window left behind.
func (c *checker) finalStall(ctx context.Context) error {
	if err := c.stall(ctx, true); err != nil {
		return err
	}
	from := time.Now()
	if err := c.waitStalled(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, finalKeys)
	ids := make([]string, 0, finalKeys)
	for i := 1; i <= finalKeys && i <= c.o.Keys; i++ {
		id := strconv.Itoa(i)
		ids = append(ids, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var version int64
			err := c.e.db.GetContext(ctx, &version, "UPDATE "+c.tables["item"]+" SET version = version + 1 WHERE id = $1 RETURNING version", id)
			if err != nil {
				errs <- fmt.Errorf("bench consistency: final write: %w", err)
				return
			}
			c.hist.commit("item:"+id, PathStream, version, time.Now())
			c.ops.Add(1)
		}()
	}
	// The stall lasts until the change stream has been sent the blocked
	// commits (it may lag behind the run's writes), then StallFor more.
	sleep(ctx, 50*time.Millisecond)
	var lsn string
	if err := c.e.db.GetContext(ctx, &lsn, "SELECT pg_current_wal_flush_lsn()::text"); err != nil {
		return err
	}
	sentBy := time.Now().Add(30 * time.Second)
	for time.Now().Before(sentBy) {
		var sent bool
		err := c.e.db.GetContext(ctx, &sent, `SELECT coalesce(bool_or(r.sent_lsn >= $1::pg_lsn), false) FROM pg_stat_replication r
			JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $2`, lsn, c.slot)
		if err != nil {
			return err
		}
		if sent {
			break
		}
		sleep(ctx, 5*time.Millisecond)
	}
	// ...and until the jobs queued so far ran (the stream's invalidations
	// among them, if it applies commits nobody can see yet).
	c.waitIdle(ctx, 3*time.Second)
	for end := time.Now().Add(c.o.StallFor); time.Now().Before(end); {
		for _, id := range ids {
			v, err := c.reader.Read(ctx, "item", id)
			if err != nil {
				return fmt.Errorf("bench consistency: read: %w", err)
			}
			c.hist.read("item:"+id, PathStream, v, time.Now())
			c.ops.Add(1)
		}
		if _, err := c.e.client.Enqueue(ctx, &tasks.WarmArgs{Cache: "item", IDs: ids}, c.queue(tasks.KindWarm)); err != nil {
			return fmt.Errorf("bench consistency: warm: %w", err)
		}
		c.warms.Add(1)
		sleep(ctx, 20*time.Millisecond)
	}
	c.waitIdle(ctx, 3*time.Second)
	if err := c.stall(context.WithoutCancel(ctx), false); err != nil {
		return err
	}
	wg.Wait()
	c.hist.outage(from, time.Now())
	close(errs)
	return <-errs
}

// waitStalled returns once commits wait (the checkpointer publishes the
// reloaded setting to the backends a little after the reload): a probe
// commit that waits is cancelled, which leaves it committed locally.
func (c *checker) waitStalled(ctx context.Context) error {
	conn, err := c.e.db.Connx(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var pid int
	if err := conn.GetContext(ctx, &pid, "SELECT pg_backend_pid()"); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = conn.ExecContext(ctx, "UPDATE "+c.e.schema+".probe SET x = x + 1")
		}()
		select {
		case <-done:
			sleep(ctx, 10*time.Millisecond)
			continue
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.e.db.ExecContext(ctx, "SELECT pg_cancel_backend($1)", pid); err != nil {
			return err
		}
		<-done
		return nil
	}
	return errors.New("bench consistency: commits did not wait for the synchronous standby within 10s")
}
