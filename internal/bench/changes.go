package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/tasks"
	dto "github.com/prometheus/client_model/go"
)

// Scenario names of Changes.
const (
	ScenarioChangesBulk    = "changes_bulk"
	ScenarioChangesTrickle = "changes_trickle"
)

// ChangesOptions configure the change stream scenarios.
type ChangesOptions struct {
	// RedisURL is the Redis everything runs on (fresh prefix, deleted after).
	RedisURL string
	// Database must have a change stream: PostgreSQL with wal_level=logical
	// and a REPLICATION role, or MySQL/MariaDB with binlog_format=ROW.
	Database config.DatabaseConfig
	// Rows is the table size and the bulk UPDATE's row count (default 50000).
	Rows int
	// TrickleRate is the steady trickle's single-row transactions per
	// second (default 200), for TrickleFor (default 5s).
	TrickleRate int
	TrickleFor  time.Duration
	// Rounds of the bulk UPDATE per side, alternating (default 3).
	Rounds int
	// BatchSize is the stream's ids per job (default: the stream's, 5000).
	BatchSize int
	// Logger receives progress lines at info level.
	Logger *slog.Logger
}

// appBatch is how many ids the application-side baseline puts in one inbox
// entry after its bulk UPDATE.
const appBatch = 1000

// Changes measures invalidation from the database's change stream against
// application-side invalidation through the inbox, in the same run, on two
// tables of Rows rows each, one followed by `cachekeeper changes` (cache
// "user"), one not (cache "user_app", invalidated by the "application"
// pushing cache:invalidate entries of 1000 ids onto the inbox after its
// commit), both served by one real worker:
//
//   - changes_bulk: one UPDATE of every row, committed; rows/s from the
//     commit to the last id's invalidation event, and p50/p99 of each id's
//     lag (commit -> invalidated). Medians of Rounds alternating rounds.
//   - changes_trickle: TrickleRate single-row UPDATE transactions per
//     second for TrickleFor; p50/p99 lag per row.
//
// An id counts as invalidated when the worker's cache.invalidated event
// naming it arrives (it is published after the fenced delete).
func Changes(ctx context.Context, opts ChangesOptions) (results []Result, err error) {
	o := opts
	if o.Rows == 0 {
		o.Rows = 50000
	}
	if o.TrickleRate == 0 {
		o.TrickleRate = 200
	}
	if o.TrickleFor == 0 {
		o.TrickleFor = 5 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rows < 1 || o.TrickleRate < 1 || o.TrickleRate > 5000 || o.Rounds < 1 || o.TrickleFor < time.Second {
		return nil, fmt.Errorf("%w: bench changes: --rows and --rounds must be positive, --trickle-rate 1-5000, --trickle-for at least 1s", ErrInvalidOptions)
	}
	kind, err := o.Database.DriverName()
	if err != nil || kind == "sqlite" {
		return nil, fmt.Errorf("%w: bench changes needs --database-url of PostgreSQL (wal_level=logical) or MySQL/MariaDB (binlog_format=ROW)", ErrInvalidOptions)
	}
	wo, err := WarmOptions{RedisURL: o.RedisURL, Database: o.Database, Rows: o.Rows, PerKeyRows: 1, Rounds: 1, Logger: o.Logger}.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := newWarmEnv(ctx, wo)
	if err != nil {
		return nil, err
	}
	defer e.close()
	appTable := e.table + "_app"
	defer func() {
		if e.schema == "" {
			_, _ = e.db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+appTable)
		}
	}()
	if err := e.seed(ctx); err != nil {
		return nil, err
	}
	copyDDL := []string{"CREATE TABLE " + appTable + " (LIKE " + e.table + " INCLUDING ALL)", "INSERT INTO " + appTable + " SELECT * FROM " + e.table}
	if kind == "mysql" {
		copyDDL[0] = "CREATE TABLE " + appTable + " LIKE " + e.table
	}
	for _, q := range copyDDL {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("bench changes: %s: %w", q, err)
		}
	}
	user := e.cfg.Caches["user"]
	user.Changes = config.ChangeSources{{Table: e.table, ID: "id"}}
	app := user
	app.Changes = nil
	app.Key = e.prefix + "app:{id}"
	app.ByIDs = "SELECT id, email, full_name AS name FROM " + appTable + " WHERE id IN (?)"
	app.All = ""
	e.cfg.Caches = map[string]config.CacheSpec{"user": user, "user_app": app}
	e.cfg.Events.MaxKeys = 100000
	invQueue := e.queueOf[mustLookup(tasks.KindInvalidate).Queue]

	// Events: the arrival time of each id's invalidation, per cache.
	rec := newArrivals()
	sub := e.rdb.Subscribe(ctx, e.cfg.Events.Channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return nil, err
	}
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for m := range sub.Channel() {
			ev, err := events.Decode([]byte(m.Payload))
			if err == nil && ev.Type == events.TypeInvalidated {
				rec.add(ev.Cache, ev.IDs, time.Now())
			}
		}
	}()
	defer func() { _ = sub.Close(); <-subDone }()

	_, stopWorker, _, err := e.startWarmWorker(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stopWorker() }()
	slot := "ckb_" + e.prefix[len("ckbench-"):len(e.prefix)-1]
	stream, err := changes.New(changes.Config{Caches: e.cfg.Caches, Database: o.Database, Redis: e.rdb, Client: e.client,
		KeyPrefix: e.prefix, Name: slot, Queue: invQueue, StatusInterval: 100 * time.Millisecond, BatchSize: o.BatchSize}, o.Logger)
	if err != nil {
		return nil, err
	}
	sctx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Run(sctx) }()
	defer func() {
		stopStream()
		<-streamDone
		if kind == "postgres" {
			c := context.WithoutCancel(ctx)
			if derr := dropSlot(c, e.db, slot, 15*time.Second); derr != nil && err == nil {
				results, err = nil, derr
			}
			_, _ = e.db.ExecContext(c, "DROP PUBLICATION IF EXISTS "+slot)
		}
	}()
	if err := waitStreaming(ctx, stream, streamDone); err != nil {
		return nil, err
	}

	b := &changesBench{e: e, o: o, rec: rec, appTable: appTable, invQueue: invQueue}
	var ours, base []float64
	var oursLag, baseLag []float64
	for round := 1; round <= o.Rounds; round++ {
		r, lags, err := b.bulk(ctx, "user", round)
		if err != nil {
			return nil, err
		}
		ours, oursLag = append(ours, r), append(oursLag, lags...)
		r, lags, err = b.bulk(ctx, "user_app", round)
		if err != nil {
			return nil, err
		}
		base, baseLag = append(base, r), append(baseLag, lags...)
		o.Logger.Info("bench changes: bulk round", slog.Int("round", round), slog.Float64("stream_rows_per_s", ours[len(ours)-1]), slog.Float64("inbox_rows_per_s", r))
	}
	bulk := NewResult(ScenarioChangesBulk, "the application pushes cache:invalidate entries of 1000 ids onto the inbox after its UPDATE", median(ours), median(base))
	bulk.Extra = map[string]any{"rows": o.Rows, "rounds": o.Rounds,
		"p50_lag_ms": percentile(oursLag, 50), "p99_lag_ms": percentile(oursLag, 99),
		"baseline_p50_lag_ms": percentile(baseLag, 50), "baseline_p99_lag_ms": percentile(baseLag, 99),
		"stream_rows_per_s_each": roundAll(ours), "baseline_rows_per_s_each": roundAll(base)}

	before := visibilityWait(stream)
	tr, trLag, err := b.trickle(ctx, "user")
	if err != nil {
		return nil, err
	}
	window := visibilityWait(stream).minus(before)
	btr, btrLag, err := b.trickle(ctx, "user_app")
	if err != nil {
		return nil, err
	}
	trickle := NewResult(ScenarioChangesTrickle, "the application LPUSHes one cache:invalidate entry to the inbox after each commit", tr, btr)
	trickle.Extra = map[string]any{"transactions_per_s_offered": o.TrickleRate, "seconds": o.TrickleFor.Seconds(),
		"p50_lag_ms": percentile(trLag, 50), "p99_lag_ms": percentile(trLag, 99),
		"baseline_p50_lag_ms": percentile(btrLag, 50), "baseline_p99_lag_ms": percentile(btrLag, 99),
		"visibility_wait_transactions": window.count, "visibility_wait_mean_ms": window.meanMs(),
		"visibility_wait_le_ms": window.cumulative()}
	return []Result{bulk, trickle}, nil
}

func mustLookup(kind string) tasks.KindInfo {
	info, _ := tasks.Lookup(kind)
	return info
}

// ms is d in milliseconds, to 0.1 ms.
func ms(d time.Duration) float64 { return float64(d.Microseconds()/100) / 10 }

func waitStreaming(ctx context.Context, s *changes.Stream, done <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.Status(ctx)
		if err == nil && st.Holder != "" && !st.ReportedAt.IsZero() {
			return nil
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("the change stream stopped")
			}
			return err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("bench changes: the change stream did not start within 30s")
		}
	}
}

// arrivals records when each id's invalidation event arrived, per cache.
type arrivals struct {
	mu    sync.Mutex
	at    map[string]map[string]time.Time
	count map[string]int
}

func newArrivals() *arrivals {
	return &arrivals{at: map[string]map[string]time.Time{}, count: map[string]int{}}
}

func (a *arrivals) add(cache string, ids []string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.at[cache]
	if m == nil {
		m = map[string]time.Time{}
		a.at[cache] = m
	}
	for _, id := range ids {
		if _, ok := m[id]; !ok {
			m[id] = t
			a.count[cache]++
		}
	}
}

// reset forgets cache's arrivals.
func (a *arrivals) reset(cache string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.at, cache)
	a.count[cache] = 0
}

// wait returns the arrival times once n ids of cache arrived.
func (a *arrivals) wait(ctx context.Context, cache string, n int, timeout time.Duration) (map[string]time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		a.mu.Lock()
		c := a.count[cache]
		if c >= n {
			m := a.at[cache]
			a.mu.Unlock()
			return m, nil
		}
		a.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench changes: %d of %d invalidations of cache %s arrived within %s", c, n, cache, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

type changesBench struct {
	e        *warmEnv
	o        ChangesOptions
	rec      *arrivals
	appTable string
	invQueue string
}

func (b *changesBench) table(cache string) string {
	if cache == "user" {
		return b.e.table
	}
	return b.appTable
}

// pushInbox is the application's invalidation: one inbox entry per batch.
func (b *changesBench) pushInbox(ctx context.Context, ids []string) error {
	entries := make([]any, 0, len(ids)/appBatch+1)
	for lo := 0; lo < len(ids); lo += appBatch {
		hi := min(lo+appBatch, len(ids))
		args, _ := json.Marshal(map[string]any{"cache": "user_app", "ids": ids[lo:hi]})
		entry, _ := json.Marshal(map[string]any{"kind": tasks.KindInvalidate, "args": json.RawMessage(args), "options": map[string]string{"queue": b.invQueue}})
		entries = append(entries, string(entry))
	}
	return b.e.rdb.LPush(ctx, b.e.cfg.Inbox.Key, entries...).Err()
}

// bulk UPDATEs every row of cache's table in one transaction; it returns
// rows/s from the commit to the last invalidation, and each row's lag.
func (b *changesBench) bulk(ctx context.Context, cache string, round int) (float64, []float64, error) {
	b.rec.reset(cache)
	n := b.o.Rows
	if _, err := b.e.db.ExecContext(ctx, "UPDATE "+b.table(cache)+" SET full_name = 'round "+strconv.Itoa(round)+"'"); err != nil {
		return 0, nil, err
	}
	committed := time.Now()
	if cache == "user_app" {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strconv.Itoa(i + 1)
		}
		if err := b.pushInbox(ctx, ids); err != nil {
			return 0, nil, err
		}
	}
	at, err := b.rec.wait(ctx, cache, n, 2*time.Minute)
	if err != nil {
		return 0, nil, err
	}
	var last time.Time
	lags := make([]float64, 0, n)
	for _, t := range at {
		lags = append(lags, ms(t.Sub(committed)))
		if t.After(last) {
			last = t
		}
	}
	return float64(n) / last.Sub(committed).Seconds(), lags, nil
}

// trickle commits TrickleRate single-row UPDATEs per second for TrickleFor.
func (b *changesBench) trickle(ctx context.Context, cache string) (float64, []float64, error) {
	b.rec.reset(cache)
	total := int(float64(b.o.TrickleRate) * b.o.TrickleFor.Seconds())
	total = min(total, b.o.Rows)
	committed := make(map[string]time.Time, total)
	stmt := b.e.db.Rebind("UPDATE " + b.table(cache) + " SET email = ? WHERE id = ?")
	interval := time.Second / time.Duration(b.o.TrickleRate)
	start := time.Now()
	for i := 1; i <= total; i++ {
		if d := time.Until(start.Add(time.Duration(i-1) * interval)); d > 0 {
			time.Sleep(d)
		}
		id := strconv.Itoa(i)
		if _, err := b.e.db.ExecContext(ctx, stmt, "t"+id+"@x", i); err != nil {
			return 0, nil, err
		}
		committed[id] = time.Now()
		if cache == "user_app" {
			if err := b.pushInbox(ctx, []string{id}); err != nil {
				return 0, nil, err
			}
		}
	}
	at, err := b.rec.wait(ctx, cache, total, time.Minute)
	if err != nil {
		return 0, nil, err
	}
	lags := make([]float64, 0, total)
	var last time.Time
	for id, t := range at {
		if c, ok := committed[id]; ok {
			lags = append(lags, ms(t.Sub(c)))
		}
		if t.After(last) {
			last = t
		}
	}
	return float64(total) / last.Sub(start).Seconds(), lags, nil
}

// histogram is a snapshot of the stream's visibility-wait histogram.
type histogram struct {
	count   uint64
	sum     float64
	buckets []float64 // upper bounds, seconds
	counts  []uint64  // cumulative
}

func visibilityWait(s *changes.Stream) histogram {
	m := &dto.Metric{}
	if err := s.Metrics().VisibilityWait.Write(m); err != nil {
		return histogram{}
	}
	h := histogram{count: m.GetHistogram().GetSampleCount(), sum: m.GetHistogram().GetSampleSum()}
	for _, b := range m.GetHistogram().GetBucket() {
		h.buckets = append(h.buckets, b.GetUpperBound())
		h.counts = append(h.counts, b.GetCumulativeCount())
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{count: h.count - o.count, sum: h.sum - o.sum, buckets: h.buckets, counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(o.counts) {
			d.counts[i] -= o.counts[i]
		}
	}
	return d
}

func (h histogram) meanMs() float64 {
	if h.count == 0 {
		return 0
	}
	return math.Round(h.sum/float64(h.count)*1e4) / 10
}

// cumulative maps each bucket's bound in ms ("0.5", "1", ...) to the
// transactions that waited at most that long.
func (h histogram) cumulative() map[string]uint64 {
	out := map[string]uint64{}
	for i, b := range h.buckets {
		out[strconv.FormatFloat(b*1000, 'f', -1, 64)] = h.counts[i]
	}
	return out
}
