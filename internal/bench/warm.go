package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// WarmOptions configure the warm scenarios.
type WarmOptions struct {
	// RedisURL is the Redis everything runs on. Keys, queues, fences and
	// checkpoints get a fresh random prefix and are deleted afterwards;
	// nothing is flushed.
	RedisURL string
	// Database is where the rows are seeded: PostgreSQL (in a fresh schema),
	// MySQL or SQLite (in a fresh table). Both are dropped afterwards.
	Database config.DatabaseConfig
	// Rows is the table size: warm_all and the ceiling read every row, the
	// coalesced scenario warms every row once. Default 100000.
	Rows int
	// PerKeyRows is how many rows the one-task-per-key scenario warms (it is
	// slow; default min(Rows, 5000)).
	PerKeyRows int
	// Servers and Concurrency shape the worker (default: the configuration's).
	Servers, Concurrency int
	// CoalesceMaxSize is warm.coalesce_max_size (default: the configuration's).
	CoalesceMaxSize int
	// Rounds alternates warm_all and the ceiling and reports medians (default 3).
	Rounds int
	// Logger receives progress lines at info level.
	Logger *slog.Logger
	// WorkerLogger is the worker's logger (default: discard).
	WorkerLogger *slog.Logger
}

func (o WarmOptions) withDefaults() (WarmOptions, error) {
	def := config.Default()
	if o.Rows == 0 {
		o.Rows = 100000
	}
	if o.PerKeyRows == 0 {
		o.PerKeyRows = min(o.Rows, 5000)
	}
	if o.Servers == 0 {
		o.Servers = def.Worker.Servers
	}
	if o.Concurrency == 0 {
		o.Concurrency = def.Worker.Concurrency
	}
	if o.CoalesceMaxSize == 0 {
		o.CoalesceMaxSize = def.Warm.CoalesceMaxSize
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WorkerLogger == nil {
		o.WorkerLogger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.RedisURL == "":
		return o, fmt.Errorf("%w: no Redis: pass --redis-url or install redis-server", ErrInvalidOptions)
	case o.Database.URL == "":
		return o, fmt.Errorf("%w: --database-url is required (postgres://..., mysql://... or sqlite://file.db)", ErrInvalidOptions)
	case o.Rows < 1 || o.Rows > 100_000_000:
		return o, fmt.Errorf("%w: --rows must be between 1 and 100000000, got %d", ErrInvalidOptions, o.Rows)
	case o.PerKeyRows < 1 || o.PerKeyRows > o.Rows:
		return o, fmt.Errorf("%w: --per-key-rows must be between 1 and --rows (%d), got %d", ErrInvalidOptions, o.Rows, o.PerKeyRows)
	case o.Rounds < 1:
		return o, fmt.Errorf("%w: --rounds must be at least 1, got %d", ErrInvalidOptions, o.Rounds)
	case o.CoalesceMaxSize < 1:
		return o, fmt.Errorf("%w: --coalesce-max-size must be at least 1, got %d", ErrInvalidOptions, o.CoalesceMaxSize)
	}
	if _, err := o.Database.DriverName(); err != nil {
		return o, fmt.Errorf("%w: --database-url: %v", ErrInvalidOptions, err)
	}
	return o, nil
}

// Warm seeds Rows three-field rows (id, email, name) and measures, in keys
// per second, on cachekeeper's real worker runtime:
//
//   - warm_per_key: PerKeyRows cache:warm tasks of one id each (the naive
//     cache-aside-as-a-job), enqueued first, then drained by the worker.
//   - warm_coalesced: Rows single-id WarmCache calls, made first (the ids
//     wait in the cache's pending set), then turned into batched jobs by the
//     worker's coalescer and warmed; ratio against warm_per_key. Then the
//     same calls again while the worker runs, timed from the first call
//     (extra running_worker_per_s: what an application calling WarmCache
//     against a running worker sees, bound by this process's callers).
//   - warm_all: one cache:warm_all task over the whole table (fenced writes,
//     checkpoint, progress, events); ratio against warm_per_key, and
//     ceiling_per_s: the same rows read with the same keyset pages and
//     written with plain pipelined DEL+HSET+EXPIRE, no fence, no task, the
//     read of the next page overlapping the write of the current one.
//
// Enqueue rates are in extra; processing is timed from the call that starts
// the worker (per-key, coalesced: the backlog is there before) or from the
// enqueue (warm_all) to the last key written.
func Warm(ctx context.Context, opts WarmOptions) ([]Result, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := newWarmEnv(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	log := o.Logger
	log.Info("seeding rows", slog.Int("rows", o.Rows), slog.String("database", e.kind))
	if err := e.seed(ctx); err != nil {
		return nil, err
	}

	log.Info("warm_per_key: one task per key", slog.Int("keys", o.PerKeyRows))
	perKey, perKeyEnq, err := e.runPerKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("warm_per_key: %w", err)
	}
	log.Info("warm_per_key done", slog.Float64("keys_per_s", round(perKey)))

	log.Info("warm_coalesced: single-id warms, coalesced", slog.Int("keys", o.Rows))
	coal, err := e.runCoalesced(ctx)
	if err != nil {
		return nil, fmt.Errorf("warm_coalesced: %w", err)
	}
	log.Info("warm_coalesced done", slog.Float64("keys_per_s", round(coal.rate)), slog.Float64("running_worker_per_s", round(coal.running)))

	var alls, ceils, seqs []float64
	for r := 0; r < o.Rounds; r++ {
		c, err := e.runCeiling(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("ceiling: %w", err)
		}
		a, err := e.runWarmAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("warm_all: %w", err)
		}
		s, err := e.runCeiling(ctx, false)
		if err != nil {
			return nil, fmt.Errorf("ceiling: %w", err)
		}
		log.Info("warm_all round", slog.Int("round", r+1), slog.Float64("warm_all_per_s", round(a)),
			slog.Float64("ceiling_per_s", round(c)), slog.Float64("sequential_ceiling_per_s", round(s)))
		alls, ceils, seqs = append(alls, a), append(ceils, c), append(seqs, s)
	}
	all, ceil := median(alls), median(ceils)

	rPer := NewResult("warm_per_key", "itself (one cache:warm task per key)", perKey, perKey)
	rPer.Extra = map[string]any{"keys": o.PerKeyRows, "enqueue_per_s": round(perKeyEnq), "database": e.kind,
		"servers": o.Servers, "concurrency": o.Concurrency}
	rCoal := NewResult("warm_coalesced", "warm_per_key", coal.rate, perKey)
	rCoal.Extra = map[string]any{"keys": o.Rows, "enqueue_per_s": round(coal.calls), "batches": coal.batches,
		"running_worker_per_s": round(coal.running), "running_calls_per_s": round(coal.runningCalls),
		"coalesce_max_size": o.CoalesceMaxSize, "coalesce_interval": e.cfg.Warm.CoalesceInterval.String(), "database": e.kind}
	rAll := NewResult("warm_all", "warm_per_key", all, perKey)
	rAll.CeilingPerS = round(ceil)
	rAll.Extra = map[string]any{"rows": o.Rows, "page_size": e.cfg.Warm.PageSize, "rounds": o.Rounds,
		"of_ceiling": math.Round(all/ceil*100) / 100, "sequential_ceiling_per_s": round(median(seqs)),
		"runs_per_s": roundAll(alls), "ceiling_runs_per_s": roundAll(ceils), "database": e.kind}
	return []Result{rPer, rCoal, rAll}, nil
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = round(x)
	}
	return out
}

// warmEnv is one run's Redis, database, names and worker configuration.
type warmEnv struct {
	o       WarmOptions
	rdb     redis.UniversalClient
	db      *sqlx.DB
	kind    string
	schema  string // PostgreSQL schema to drop, or ""
	table   string
	prefix  string
	keyPfx  string // user keys: keyPfx + id
	cfg     config.Config
	client  *tasks.Client
	insp    *asynq.Inspector
	spec    *cachespec.Spec
	queueOf map[string]string
}

func newWarmEnv(ctx context.Context, o WarmOptions) (*warmEnv, error) {
	rc := config.RedisConfig{URL: o.RedisURL}
	rdb, err := rc.NewClient()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s is unreachable: %w", config.RedactURL(o.RedisURL), err)
	}
	db, err := sqldb.Open(o.Database)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if err := sqldb.Ping(pctx, db); err != nil {
		_ = rdb.Close()
		_ = db.Close()
		return nil, err
	}
	kind, _ := o.Database.DriverName()
	prefix := newPrefix() // "ckbench-1a2b3c4d-"
	e := &warmEnv{o: o, rdb: rdb, db: db, kind: kind, prefix: prefix, keyPfx: prefix + "user:",
		client: tasks.NewClientFromRedis(rdb, tasks.WithKeyPrefix(prefix+"ck:")), insp: asynq.NewInspectorFromRedisClient(rdb)}
	ident := strings.ReplaceAll(strings.TrimSuffix(prefix, "-"), "-", "_")
	if kind == "postgres" {
		e.schema = ident
		e.table = ident + ".users"
	} else {
		e.table = ident + "_users"
	}

	cfg := config.Default()
	cfg.Redis = rc
	cfg.Database = o.Database
	// cachekeeper's own keys under prefix+"ck:", the cached rows under
	// prefix+"user:": a cache template must not render into the key prefix.
	cfg.KeyPrefix = prefix + "ck:"
	cfg.Events.Channel = prefix + "events"
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = o.Servers
	cfg.Worker.Concurrency = o.Concurrency
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	e.queueOf = map[string]string{}
	queues := map[string]int{}
	for q, weight := range cfg.Worker.Queues {
		queues[prefix+q] = weight
		e.queueOf[q] = prefix + q
	}
	cfg.Worker.Queues = queues
	if cfg.Worker.FastLane.Queue != "" {
		cfg.Worker.FastLane.Queue = prefix + cfg.Worker.FastLane.Queue
	}
	cfg.Warm.CoalesceMaxSize = o.CoalesceMaxSize
	cfg.Warm.CoalesceQueue = prefix + cfg.Warm.CoalesceQueue
	cfg.Caches = map[string]config.CacheSpec{"user": {
		Key:   e.keyPfx + "{id}",
		TTL:   time.Hour,
		ByIDs: "SELECT id, email, full_name AS name FROM " + e.table + " WHERE id IN (?)",
		All:   "SELECT id, email, full_name AS name FROM " + e.table + " WHERE id > ? ORDER BY id LIMIT ?",
	}}
	if err := cfg.Validate(); err != nil {
		e.close()
		return nil, err
	}
	e.cfg = cfg
	return e, nil
}

// seed creates the table and fills it with Rows rows.
func (e *warmEnv) seed(ctx context.Context) error {
	idType := map[string]string{"postgres": "BIGINT", "mysql": "BIGINT", "sqlite": "INTEGER"}[e.kind]
	textType := map[string]string{"postgres": "TEXT", "mysql": "VARCHAR(255)", "sqlite": "TEXT"}[e.kind]
	if e.schema != "" {
		if _, err := e.db.ExecContext(ctx, "CREATE SCHEMA "+e.schema); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	ddl := fmt.Sprintf("CREATE TABLE %s (id %s PRIMARY KEY, email %s NOT NULL, full_name %s)", e.table, idType, textType, textType)
	if _, err := e.db.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	if e.kind == "postgres" {
		_, err := e.db.ExecContext(ctx, "INSERT INTO "+e.table+
			" SELECT i, 'user' || i || '@example.com', 'User Number ' || i FROM generate_series(1, $1) AS i", e.o.Rows)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		_, err = e.db.ExecContext(ctx, "ANALYZE "+e.table)
		return err
	}
	const batch = 500
	tx, err := e.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for lo := 1; lo <= e.o.Rows; lo += batch {
		hi := min(lo+batch-1, e.o.Rows)
		var sb strings.Builder
		args := make([]any, 0, 3*(hi-lo+1))
		sb.WriteString("INSERT INTO " + e.table + " (id, email, full_name) VALUES ")
		for i := lo; i <= hi; i++ {
			if i > lo {
				sb.WriteByte(',')
			}
			sb.WriteString("(?,?,?)")
			args = append(args, i, fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User Number %d", i))
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(sb.String()), args...); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return tx.Commit()
}

// close drops the table, deletes every key and queue of the run, and closes
// the connections.
func (e *warmEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if e.schema != "" {
		_, _ = e.db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE")
	} else if e.table != "" {
		_, _ = e.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+e.table)
	}
	_ = e.db.Close()
	for _, q := range e.queueOf {
		_ = e.insp.DeleteQueue(q, true)
	}
	_ = deleteByPrefix(ctx, e.rdb, e.prefix)
	_ = e.rdb.Close()
}

// deleteByPrefix unlinks every key starting with prefix (SCAN, batches).
func deleteByPrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	batch := make([]string, 0, 5000)
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

// startWarmWorker starts a worker with the run's cache and returns a
// function reading its written-keys counter, one stopping it, and when it
// was started: the time a scenario that drains a backlog counts from (it
// includes the worker's start-up, during which coalesced ids are already
// turned into jobs).
func (e *warmEnv) startWarmWorker(ctx context.Context) (written func() float64, stop func() error, started time.Time, err error) {
	reg := prometheus.NewRegistry()
	w, err := worker.New(e.cfg, worker.Deps{Redis: e.rdb, DB: e.db, Client: e.client, Registry: reg}, e.o.WorkerLogger)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	started = time.Now()
	go func() { done <- w.Run(wctx) }()
	stop = func() error { cancel(); return <-done }
	deadline := time.Now().Add(10 * time.Second)
	for !w.Ready() {
		select {
		case err := <-done:
			cancel()
			if err == nil {
				err = errors.New("worker stopped at start")
			}
			return nil, nil, time.Time{}, err
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, nil, time.Time{}, errors.New("cachekeeper's worker did not start within 10s")
		}
	}
	counter := w.Metrics().Keys
	written = func() float64 {
		var total float64
		for _, kind := range []string{tasks.KindWarm, tasks.KindWarmAll} {
			total += counterValue(counter.WithLabelValues(kind, "written"))
		}
		return total
	}
	return written, stop, started, nil
}

// waitWritten polls until the worker wrote n keys and returns when it did.
func waitWritten(ctx context.Context, written func() float64, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if written() >= float64(n) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%v of %d keys written within %s", written(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// enqueueAll runs send for i in [1, n] from 8 goroutines and returns the rate.
func enqueueAll(ctx context.Context, n int, send func(ctx context.Context, i int) error) (float64, error) {
	const producers = 8
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for p := 0; p < producers; p++ {
		g.Go(func() error {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return nil
				}
				if err := send(gctx, int(i)); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func (e *warmEnv) runPerKey(ctx context.Context) (rate, enq float64, err error) {
	if err := deleteByPrefix(ctx, e.rdb, e.keyPfx); err != nil {
		return 0, 0, err
	}
	n := e.o.PerKeyRows
	queue := tasks.Queue(e.queueOf[tasks.QueueDefault])
	enq, err = enqueueAll(ctx, n, func(ctx context.Context, i int) error {
		_, err := e.client.WarmCacheIDs(ctx, "user", []string{fmt.Sprint(i)}, queue)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	written, stop, start, err := e.startWarmWorker(ctx)
	if err != nil {
		return 0, 0, err
	}
	end, err := waitWritten(ctx, written, n, 30*time.Second+time.Duration(n)*2*time.Millisecond)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / end.Sub(start).Seconds(), enq, nil
}

// coalescedRun is what the coalesced scenario measured.
type coalescedRun struct {
	rate, calls, batches float64
	// running and runningCalls: the same calls made while the worker runs,
	// timed from the first call to the last key written, and the calls' rate.
	running, runningCalls float64
}

// runCoalesced makes Rows WarmCache calls, then starts the worker and times
// it from its start to the last key written; then, with the worker running,
// it makes the same calls again and times them from the first call.
func (e *warmEnv) runCoalesced(ctx context.Context) (coalescedRun, error) {
	var r coalescedRun
	if err := deleteByPrefix(ctx, e.rdb, e.keyPfx); err != nil {
		return r, err
	}
	n := e.o.Rows
	call := func(ctx context.Context, i int) error { return e.client.WarmCache(ctx, "user", i) }
	var err error
	if r.calls, err = enqueueAll(ctx, n, call); err != nil {
		return r, err
	}
	queue := e.queueOf[tasks.QueueDefault]
	var before int
	if qi, err := e.insp.GetQueueInfo(queue); err == nil {
		before = qi.ProcessedTotal
	}
	written, stop, start, err := e.startWarmWorker(ctx)
	if err != nil {
		return r, err
	}
	timeout := 60*time.Second + time.Duration(n)*time.Millisecond
	end, err := waitWritten(ctx, written, n, timeout)
	if err == nil {
		r.rate = float64(n) / end.Sub(start).Seconds()
		err = waitQueueIdle(ctx, e.insp, queue, 10*time.Second)
	}
	if err == nil {
		if qi, ierr := e.insp.GetQueueInfo(queue); ierr == nil {
			r.batches = float64(qi.ProcessedTotal - before)
		}
		err = deleteByPrefix(ctx, e.rdb, e.keyPfx)
	}
	if err == nil {
		base := written()
		since := func() float64 { return written() - base }
		t0 := time.Now()
		if r.runningCalls, err = enqueueAll(ctx, n, call); err == nil {
			if end, err = waitWritten(ctx, since, n, timeout); err == nil {
				r.running = float64(n) / end.Sub(t0).Seconds()
			}
		}
	}
	if serr := stop(); err == nil {
		err = serr
	}
	return r, err
}

// waitQueueIdle polls until queue has no pending or active task.
func waitQueueIdle(ctx context.Context, insp *asynq.Inspector, queue string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		qi, err := insp.GetQueueInfo(queue)
		if err == nil && qi.Pending+qi.Active == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue %s not idle within %s", queue, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (e *warmEnv) runWarmAll(ctx context.Context) (float64, error) {
	if err := deleteByPrefix(ctx, e.rdb, e.keyPfx); err != nil {
		return 0, err
	}
	written, stop, _, err := e.startWarmWorker(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	_, err = e.client.Enqueue(ctx, &tasks.WarmAllArgs{Cache: "user"}, tasks.Queue(e.queueOf[tasks.QueueLow]))
	var end time.Time
	if err == nil {
		end, err = waitWritten(ctx, written, e.o.Rows, 60*time.Second+time.Duration(e.o.Rows)*100*time.Microsecond)
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	return float64(e.o.Rows) / end.Sub(start).Seconds(), nil
}

// runCeiling reads the same rows with the same keyset pages and writes them
// with plain pipelined DEL+HSET+EXPIRE: no fence, no task. overlap reads the
// next page while the current one is written, as warm_all does.
func (e *warmEnv) runCeiling(ctx context.Context, overlap bool) (float64, error) {
	if err := deleteByPrefix(ctx, e.rdb, e.keyPfx); err != nil {
		return 0, err
	}
	if e.spec == nil {
		s, err := cachespec.Compile("user", e.cfg.Caches["user"])
		if err != nil {
			return 0, err
		}
		if err := s.Validate(ctx, e.db); err != nil {
			return 0, err
		}
		e.spec = s
	}
	pageSize := e.cfg.Warm.PageSize
	write := func(b *cachespec.Batch) error {
		pipe := e.rdb.Pipeline()
		for _, en := range b.Entries {
			args := make([]any, len(en.Fields))
			for i, f := range en.Fields {
				args[i] = f
			}
			pipe.Del(ctx, en.Key)
			pipe.HSet(ctx, en.Key, args...)
			pipe.Expire(ctx, en.Key, en.TTL)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	start := time.Now()
	rows := 0
	pages := make(chan *cachespec.Batch, 1)
	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	g.Go(func() error {
		defer close(pages)
		after := e.spec.Start()
		for {
			b, err := e.spec.ReadPage(gctx, e.db, after, pageSize)
			if err != nil {
				return err
			}
			if overlap {
				select {
				case pages <- b:
				case <-gctx.Done():
					return gctx.Err()
				}
			} else if err := write(b); err != nil {
				return err
			}
			mu.Lock()
			rows += b.Rows
			mu.Unlock()
			if b.Rows < pageSize {
				return nil
			}
			after = b.Last
		}
	})
	g.Go(func() error {
		for b := range pages {
			if err := write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if rows != e.o.Rows {
		return 0, fmt.Errorf("ceiling read %d rows, want %d", rows, e.o.Rows)
	}
	return float64(rows) / time.Since(start).Seconds(), nil
}
