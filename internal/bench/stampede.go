package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/cache"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// Defaults of StampedeOptions shown by the command's --help.
const (
	DefaultFillPause   = 50 * time.Millisecond
	DefaultRaceWindow  = 700 * time.Millisecond
	DefaultStampedeTTL = 2 * time.Second
)

// StampedeOptions configure the stampede scenarios.
type StampedeOptions struct {
	// RedisURL is the Redis everything runs on; keys get a fresh prefix and
	// are deleted afterwards.
	RedisURL string
	// Database is a PostgreSQL database; a fresh schema holds the table, and
	// a sequence bumped by the cache's query counts the queries on the
	// database's side. It is dropped afterwards.
	Database config.DatabaseConfig
	// Readers read one missing hot key at once (default 200).
	Readers int
	// Bursts of each side, alternating; medians are printed (default 5).
	Bursts int
	// QueryDelay is added to every query of the cache inside the database
	// (pg_sleep; default 0).
	QueryDelay time.Duration
	// FillPause is the slow fill's pause between the read and the write
	// (default 50ms), RaceKeys the keys raced (default 200), and RaceWindow
	// the span over which each key's row is updated and invalidated
	// (default 700ms).
	FillPause  time.Duration
	RaceKeys   int
	RaceWindow time.Duration
	// TTL of the hot key read steadily (default 2s), ReadRate its reads per
	// second (default 20) and Duration how long it is read (default 3.5
	// TTLs).
	TTL      time.Duration
	ReadRate int
	Duration time.Duration
	// Logger receives progress lines; WorkerLogger is the worker's.
	Logger, WorkerLogger *slog.Logger
}

func (o StampedeOptions) withDefaults() (StampedeOptions, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Readers, 200)
	def(&o.Bursts, 5)
	def(&o.RaceKeys, 200)
	def(&o.ReadRate, 20)
	defD(&o.FillPause, DefaultFillPause)
	defD(&o.RaceWindow, DefaultRaceWindow)
	defD(&o.TTL, DefaultStampedeTTL)
	defD(&o.Duration, o.TTL*7/2)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WorkerLogger == nil {
		o.WorkerLogger = slog.New(slog.DiscardHandler)
	}
	kind, err := o.Database.DriverName()
	switch {
	case o.RedisURL == "":
		return o, fmt.Errorf("%w: no Redis: pass --redis-url or install redis-server", ErrInvalidOptions)
	case o.Database.URL == "":
		return o, fmt.Errorf("%w: --database-url postgres://... is required (queries are counted by a sequence in a fresh schema)", ErrInvalidOptions)
	case err != nil:
		return o, fmt.Errorf("%w: --database-url: %v", ErrInvalidOptions, err)
	case kind != "postgres":
		return o, fmt.Errorf("%w: --database-url must be PostgreSQL (postgres://...), got %s", ErrInvalidOptions, kind)
	case o.Readers < 1 || o.Readers > 10000:
		return o, fmt.Errorf("%w: --readers must be between 1 and 10000, got %d", ErrInvalidOptions, o.Readers)
	case o.Bursts < 1:
		return o, fmt.Errorf("%w: --bursts must be at least 1, got %d", ErrInvalidOptions, o.Bursts)
	case o.RaceKeys < 1 || o.RaceKeys > 10000:
		return o, fmt.Errorf("%w: --race-keys must be between 1 and 10000, got %d", ErrInvalidOptions, o.RaceKeys)
	case o.QueryDelay < 0 || o.FillPause < 0 || o.RaceWindow <= 0:
		return o, fmt.Errorf("%w: --query-delay and --fill-pause must not be negative, --race-window must be positive", ErrInvalidOptions)
	case o.TTL < 500*time.Millisecond:
		return o, fmt.Errorf("%w: --ttl must be at least 500ms, got %s", ErrInvalidOptions, o.TTL)
	case o.ReadRate < 1 || o.ReadRate > 1000:
		return o, fmt.Errorf("%w: --read-rate must be between 1 and 1000 reads/s, got %d", ErrInvalidOptions, o.ReadRate)
	case o.Duration < o.TTL:
		return o, fmt.Errorf("%w: --duration (%s) must be at least one --ttl (%s)", ErrInvalidOptions, o.Duration, o.TTL)
	}
	return o, nil
}

// stampedeEnv is one run's Redis, database, caches and readers.
type stampedeEnv struct {
	o      StampedeOptions
	rdb    *redis.Client
	db     *sqlx.DB
	prefix string
	schema string
	cfg    config.Config
	spec   *cachespec.Spec
	fencer *fence.Fencer
	// leases reads through the read path as separate processes would (no
	// single flight in the process).
	leases *cache.Reader
}

// Stampede runs the scenarios of `cachekeeper bench stampede`:
//
//   - naive: Readers concurrent readers of one missing key with the FastAPI
//     guide's fill (HGETALL; on a miss the cache's query, then HSET and
//     PEXPIRE), Bursts times; database queries counted by the database.
//     Then the slow-fill race: RaceKeys keys read with a FillPause between
//     the read and the write while each key's row is updated and invalidated
//     (fenced, as the worker's cache:invalidate does) at a random moment
//     within RaceWindow; stale_keys counts keys left holding an old row.
//   - leases: the same through the read path (package cache), each reader
//     acting as its own process (leases, no single flight in the process);
//     bursts alternate with the naive ones.
//   - refresh_ahead: one hot key read ReadRate times a second for Duration,
//     its TTL TTL, with the worker's refresh-ahead on, against the same reads
//     of a key of a cache without it (baseline); misses_at_expiry counts
//     reads that were not hits after the first.
func Stampede(ctx context.Context, o StampedeOptions) ([]Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := newStampedeEnv(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	naive, leases, err := e.bursts(ctx)
	if err != nil {
		return nil, err
	}
	staleNaive, err := e.race(ctx, false)
	if err != nil {
		return nil, err
	}
	staleLeases, err := e.race(ctx, true)
	if err != nil {
		return nil, err
	}
	naive.Extra["stale_keys"], leases.Extra["stale_keys"] = staleNaive, staleLeases
	leases.Extra["baseline_stale_keys"] = staleNaive
	naive.Extra["race_keys"], leases.Extra["race_keys"] = o.RaceKeys, o.RaceKeys
	ra, err := e.refreshAhead(ctx)
	if err != nil {
		return nil, err
	}
	return []Result{naive, leases, ra}, nil
}

func newStampedeEnv(ctx context.Context, o StampedeOptions) (*stampedeEnv, error) {
	rc := config.RedisConfig{URL: o.RedisURL}
	ropts, err := rc.Options()
	if err != nil {
		return nil, err
	}
	ropts.PoolSize = 2*max(o.Readers, o.RaceKeys) + 32 // every reader may block on its wake list
	rdb := redis.NewClient(ropts)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
	prefix := newPrefix()
	e := &stampedeEnv{o: o, rdb: rdb, db: db, prefix: prefix, schema: strings.ReplaceAll(strings.TrimSuffix(prefix, "-"), "-", "_")}
	if err := e.seed(pctx); err != nil {
		e.close()
		return nil, err
	}
	cfg := config.Default()
	cfg.Redis = rc
	cfg.Database = o.Database
	cfg.KeyPrefix = prefix + "ck:"
	cfg.Events.Channel = prefix + "events"
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.ShutdownTimeout = 5 * time.Second
	cfg.Inbox.Disabled = true
	cfg = prefixQueues(cfg, prefix)
	query := func() string {
		return fmt.Sprintf("SELECT id, email, name, v FROM %s.users WHERE id IN (?) AND %s.counted(%d)", e.schema, e.schema, o.QueryDelay.Milliseconds())
	}
	cfg.Caches = map[string]config.CacheSpec{
		"user":  {Key: prefix + "user:{id}", TTL: time.Hour, ByIDs: query()},
		"hot":   {Key: prefix + "hot:{id}", TTL: o.TTL, ByIDs: query(), RefreshAhead: config.RefreshAhead{Enabled: true, Interval: max(o.TTL/20, 50*time.Millisecond)}},
		"plain": {Key: prefix + "plain:{id}", TTL: o.TTL, ByIDs: query()},
	}
	if err := cfg.Validate(); err != nil {
		e.close()
		return nil, err
	}
	e.cfg = cfg
	if e.spec, err = cachespec.Compile("user", cfg.Caches["user"]); err == nil {
		err = e.spec.Validate(pctx, db)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	k, _ := keys.New(cfg.KeyPrefix)
	if e.fencer, err = fence.New(rdb, k, cfg.Fence.TTL); err != nil {
		e.close()
		return nil, err
	}
	if e.leases, err = cache.New(pctx, cfg, cache.Options{Redis: rdb, DB: db, NoSingleFlight: true}); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// prefixQueues moves the worker's queues under prefix.
func prefixQueues(cfg config.Config, prefix string) config.Config {
	queues := map[string]int{}
	for q, w := range cfg.Worker.Queues {
		queues[prefix+q] = w
	}
	cfg.Worker.Queues = queues
	if cfg.Worker.FastLane.Queue != "" {
		cfg.Worker.FastLane.Queue = prefix + cfg.Worker.FastLane.Queue
	}
	cfg.Warm.CoalesceQueue = prefix + cfg.Warm.CoalesceQueue
	return cfg
}

// seed creates the schema: the users table (ids 1..RaceKeys+10), the
// sequence counting queries and the function the cache's query calls.
func (e *stampedeEnv) seed(ctx context.Context) error {
	s := e.schema
	stmts := []string{
		"CREATE SCHEMA " + s,
		"CREATE TABLE " + s + ".users (id bigint PRIMARY KEY, email text NOT NULL, name text, v bigint NOT NULL DEFAULT 0)",
		"CREATE SEQUENCE " + s + ".queries",
		// Called once per row the query returns (one per query of one id):
		// counts the query on the database's side, then sleeps the delay.
		"CREATE FUNCTION " + s + ".counted(delay_ms int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN " +
			"PERFORM nextval('" + s + ".queries'); IF delay_ms > 0 THEN PERFORM pg_sleep(delay_ms / 1000.0); END IF; RETURN true; END $$",
		fmt.Sprintf("INSERT INTO %s.users (id, email, name) SELECT i, 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, %d) AS i", s, e.o.RaceKeys+10),
	}
	for _, q := range stmts {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("seed the stampede schema: %w", err)
		}
	}
	return nil
}

// queries returns the database's count of the cache's queries so far.
func (e *stampedeEnv) queries(ctx context.Context) (int64, error) {
	var n int64
	err := e.db.GetContext(ctx, &n, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM "+e.schema+".queries")
	return n, err
}

func (e *stampedeEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = e.db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+e.schema+" CASCADE")
	_ = e.db.Close()
	_ = deleteByPrefix(ctx, e.rdb, e.prefix)
	_ = e.rdb.Close()
}

// naiveRead is the FastAPI guide's read: HGETALL; on a miss the cache's
// query, pause, then HSET and PEXPIRE.
func (e *stampedeEnv) naiveRead(ctx context.Context, id string, pause time.Duration) error {
	key, _ := e.spec.KeyForID(id)
	h, err := e.rdb.HGetAll(ctx, key).Result()
	if err != nil || len(h) > 0 {
		return err
	}
	fields, err := e.load(ctx, id)
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, pause); err != nil {
		return err
	}
	args := make([]any, len(fields))
	for i, f := range fields {
		args[i] = f
	}
	pipe := e.rdb.Pipeline()
	pipe.HSet(ctx, key, args...)
	pipe.PExpire(ctx, key, e.spec.TTL())
	_, err = pipe.Exec(ctx)
	return err
}

// load runs the cache's query for id, rendered as the worker renders it.
func (e *stampedeEnv) load(ctx context.Context, id string) ([]string, error) {
	b, err := e.spec.ReadIDs(ctx, e.db, []string{id})
	if err != nil {
		return nil, err
	}
	if b.Rows == 0 {
		return nil, fmt.Errorf("row %s is missing", id)
	}
	return b.Entries[0].Fields, nil
}

// leaseRead reads through the read path, the load pausing before the fill.
func (e *stampedeEnv) leaseRead(ctx context.Context, id string, pause time.Duration) error {
	if pause == 0 {
		_, err := e.leases.Get(ctx, "user", id)
		return err
	}
	_, err := e.leases.GetWith(ctx, "user", id, func(ctx context.Context, id string) (map[string]string, error) {
		fields, err := e.load(ctx, id)
		if err != nil {
			return nil, err
		}
		m := make(map[string]string, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i]] = fields[i+1]
		}
		return m, sleepCtx(ctx, pause)
	})
	return err
}

// burst releases n readers of id at once and returns each one's latency
// (ms) and the database queries the burst cost.
func (e *stampedeEnv) burst(ctx context.Context, n int, id string, read func(context.Context, string, time.Duration) error) ([]float64, int64, error) {
	key, _ := e.spec.KeyForID(id)
	k, _ := keys.New(e.cfg.KeyPrefix)
	if err := e.rdb.Del(ctx, key, k.Lease(key), k.LeaseWake(key)).Err(); err != nil {
		return nil, 0, err
	}
	return e.release(ctx, n, id, read)
}

// release starts n readers of id at once and returns each one's latency
// (ms) and the database queries they cost.
func (e *stampedeEnv) release(ctx context.Context, n int, id string, read func(context.Context, string, time.Duration) error) ([]float64, int64, error) {
	before, err := e.queries(ctx)
	if err != nil {
		return nil, 0, err
	}
	lat := make([]float64, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			t := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			errs[i] = read(rctx, id, 0)
			cancel()
			lat[i] = float64(time.Since(t).Microseconds()) / 1000
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	after, err := e.queries(ctx)
	return lat, after - before, err
}

// bursts alternates naive and lease bursts, after measuring a single cold
// read of each.
func (e *stampedeEnv) bursts(ctx context.Context) (Result, Result, error) {
	o := e.o
	var coldNaive, coldLeases []float64
	for i := 0; i < 5; i++ {
		for _, side := range []struct {
			read func(context.Context, string, time.Duration) error
			out  *[]float64
		}{{e.naiveRead, &coldNaive}, {e.leaseRead, &coldLeases}} {
			lat, _, err := e.burst(ctx, 1, "1", side.read)
			if err != nil {
				return Result{}, Result{}, err
			}
			*side.out = append(*side.out, lat[0])
		}
	}
	var latN, latL, latH, qN, qL []float64
	for b := 0; b < o.Bursts; b++ {
		lat, q, err := e.burst(ctx, o.Readers, "1", e.naiveRead)
		if err != nil {
			return Result{}, Result{}, fmt.Errorf("naive burst: %w", err)
		}
		latN, qN = append(latN, lat...), append(qN, float64(q))
		lat, q, err = e.burst(ctx, o.Readers, "1", e.leaseRead)
		if err != nil {
			return Result{}, Result{}, fmt.Errorf("lease burst: %w", err)
		}
		latL, qL = append(latL, lat...), append(qL, float64(q))
		// The same readers on the key just filled: the floor a burst of
		// hits costs on this machine.
		lat, _, err = e.release(ctx, o.Readers, "1", e.leaseRead)
		if err != nil {
			return Result{}, Result{}, fmt.Errorf("hit burst: %w", err)
		}
		latH = append(latH, lat...)
		o.Logger.Info("stampede burst", slog.Int("burst", b+1), slog.Float64("naive_queries", qN[b]), slog.Float64("lease_queries", qL[b]))
	}
	cn, cl := median(coldNaive), median(coldLeases)
	p50N, p99N, p50L := percentile(latN, 50), percentile(latN, 99), percentile(latL, 50)
	common := func(r *Result, lat, q []float64, cold float64) {
		r.Extra = map[string]any{"readers": o.Readers, "bursts": o.Bursts, "db_queries": median(q), "db_queries_max": slicesMax(q),
			"p50_ms": roundTo(percentile(lat, 50), 2), "p99_ms": roundTo(percentile(lat, 99), 2), "cold_read_ms": roundTo(cold, 2),
			"p99_over_cold_read": roundTo(percentile(lat, 99)/cold, 2), "query_delay_ms": o.QueryDelay.Milliseconds(),
			"fill_pause_ms": o.FillPause.Milliseconds()}
	}
	naive := NewResult("naive", "itself: the guide's fill (HGETALL; on a miss SELECT, then HSET+PEXPIRE)", 1000/p50N, 1000/p50N)
	common(&naive, latN, qN, cn)
	naive.Extra["baseline_p50_ms"] = roundTo(p50N, 2)
	leases := NewResult("leases", "naive: the guide's fill, same run", 1000/p50L, 1000/p50N)
	common(&leases, latL, qL, cl)
	leases.Extra["baseline_p50_ms"] = roundTo(p50N, 2)
	leases.Extra["baseline_p99_ms"] = roundTo(p99N, 2)
	leases.Extra["baseline_db_queries"] = median(qN)
	leases.Extra["hit_burst_p99_ms"] = roundTo(percentile(latH, 99), 2)
	return naive, leases, nil
}

func slicesMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// race runs the slow-fill race over RaceKeys keys and returns how many keys
// hold a row older than the database's once everything settled.
func (e *stampedeEnv) race(ctx context.Context, leases bool) (int, error) {
	o := e.o
	read := e.naiveRead
	if leases {
		read = e.leaseRead
	}
	ids := make([]string, o.RaceKeys)
	keyList := make([]string, o.RaceKeys)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
		keyList[i], _ = e.spec.KeyForID(ids[i])
	}
	if err := e.rdb.Del(ctx, keyList...).Err(); err != nil {
		return 0, err
	}
	errs := make([]error, 2*len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[2*i] = read(ctx, id, o.FillPause)
		}()
		go func() {
			defer wg.Done()
			if err := sleepCtx(ctx, time.Duration(rand.Int64N(int64(o.RaceWindow)))); err != nil {
				errs[2*i+1] = err
				return
			}
			if _, err := e.db.ExecContext(ctx, "UPDATE "+e.schema+".users SET v = v + 1 WHERE id = $1", id); err != nil {
				errs[2*i+1] = err
				return
			}
			_, errs[2*i+1] = e.fencer.Invalidate(ctx, []string{keyList[i]})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("slow-fill race: %w", err)
	}
	var current []struct {
		ID int64 `db:"id"`
		V  int64 `db:"v"`
	}
	if err := e.db.SelectContext(ctx, &current, "SELECT id, v FROM "+e.schema+".users WHERE id <= $1", o.RaceKeys); err != nil {
		return 0, err
	}
	stale := 0
	for _, row := range current {
		key, _ := e.spec.KeyForID(strconv.FormatInt(row.ID, 10))
		v, err := e.rdb.HGet(ctx, key, "v").Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if v != strconv.FormatInt(row.V, 10) {
			stale++
		}
	}
	o.Logger.Info("slow-fill race", slog.Bool("leases", leases), slog.Int("stale_keys", stale), slog.Int("keys", o.RaceKeys))
	return stale, nil
}

// refreshAhead reads a hot key steadily across its TTL with the worker's
// refresh-ahead on, beside the same reads of a cache without it.
func (e *stampedeEnv) refreshAhead(ctx context.Context) (Result, error) {
	o := e.o
	reg := prometheus.NewRegistry()
	w, err := worker.New(e.cfg, worker.Deps{Redis: e.rdb, DB: e.db, Client: tasks.NewClientFromRedis(e.rdb, tasks.WithKeyPrefix(e.cfg.KeyPrefix)), Registry: reg}, o.WorkerLogger)
	if err != nil {
		return Result{}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for !w.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !w.Ready() {
		return Result{}, errors.New("cachekeeper's worker did not start within 10s")
	}
	type side struct {
		cache  string
		reader *cache.Reader
		lat    []float64
		err    error
	}
	sides := []*side{{cache: "hot"}, {cache: "plain"}}
	for _, s := range sides {
		if s.reader, err = cache.New(ctx, e.cfg, cache.Options{Redis: e.rdb, DB: e.db}); err != nil {
			return Result{}, err
		}
	}
	before, err := e.queries(ctx)
	if err != nil {
		return Result{}, err
	}
	var wg sync.WaitGroup
	for _, s := range sides {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second / time.Duration(o.ReadRate))
			defer t.Stop()
			end := time.Now().Add(o.Duration)
			for time.Now().Before(end) {
				start := time.Now()
				if _, err := s.reader.Get(ctx, s.cache, "1"); err != nil {
					s.err = err
					return
				}
				s.lat = append(s.lat, float64(time.Since(start).Microseconds())/1000)
				select {
				case <-ctx.Done():
					s.err = ctx.Err()
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range sides {
		if s.err != nil {
			return Result{}, s.err
		}
	}
	after, err := e.queries(ctx)
	if err != nil {
		return Result{}, err
	}
	misses := func(s *side) int64 {
		st := s.reader.Stats()
		return int64(len(s.lat)) - st.Hits - 1 // the first read is the cold one
	}
	hot, plain := sides[0], sides[1]
	p50, bp50 := percentile(hot.lat, 50), percentile(plain.lat, 50)
	r := NewResult("refresh_ahead", "the same reads of a cache without refresh_ahead (plain TTL, leases)", 1000/p50, 1000/bp50)
	r.Extra = map[string]any{
		"misses_at_expiry": misses(hot), "baseline_misses_at_expiry": misses(plain),
		"reads": len(hot.lat), "read_per_s": o.ReadRate, "ttl_ms": o.TTL.Milliseconds(),
		"expiries": int(o.Duration / o.TTL), "db_queries": after - before,
		"refreshed": counterValue(w.Metrics().RefreshAhead.WithLabelValues("hot", "refreshed")),
		"p50_ms":    roundTo(p50, 2), "p99_ms": roundTo(percentile(hot.lat, 99), 2),
		"baseline_p50_ms": roundTo(bp50, 2), "baseline_p99_ms": roundTo(percentile(plain.lat, 99), 2),
	}
	o.Logger.Info("refresh-ahead", slog.Any("misses_at_expiry", misses(hot)), slog.Any("baseline", misses(plain)))
	return r, nil
}
