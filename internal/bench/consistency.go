package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
)

// Write paths of the consistency checker: how a write's invalidation
// reaches the cache.
const (
	PathStream  = "stream"  // direct SQL, seen by the change stream
	PathClient  = "client"  // the Go client enqueues cache:invalidate after its commit (rewarm on every other write)
	PathInbox   = "inbox"   // an inbox entry pushed after the commit
	PathTag     = "tag"     // cache:invalidate_tag of the row's tag after the commit
	PathPattern = "pattern" // cache:invalidate_pattern of the row's key after the commit
)

// appPaths are the paths of the cache not followed by the stream, by id % 4.
var appPaths = []string{PathClient, PathInbox, PathTag, PathPattern}

// Reader reads the version of one cached row the way the application does.
// The checker calls it from several goroutines at once.
type Reader interface {
	Read(ctx context.Context, cache, id string) (version int64, err error)
}

// ReaderEnv is what a Reader may use: the run's Redis, database, client and
// configuration (its caches "item" and "app", whose rows have a column
// version).
type ReaderEnv struct {
	Redis  redis.UniversalClient
	DB     *sqlx.DB
	Client *tasks.Client
	Config config.Config
}

// ConsistencyOptions configure the history checker.
type ConsistencyOptions struct {
	// RedisURL is the Redis everything runs on (fresh prefix, deleted after).
	RedisURL string
	// Database is PostgreSQL with wal_level=logical and a REPLICATION role.
	Database config.DatabaseConfig
	// Operations is how many reads, writes and warms to run (default 100000).
	Operations int
	// Keys is the rows per cache (default 200: hot keys, many races).
	Keys int
	// Writers and Readers are the concurrent goroutines (default 4 and 4).
	Writers, Readers int
	// WriteRate caps the writes per second of all writers together
	// (default 300; -1: no cap, which measures a saturated worker's backlog
	// rather than the invalidation paths).
	WriteRate int
	// ReadRate caps the reads per second of all readers together (default
	// 2000; -1: no cap).
	ReadRate int
	// Stalls injects synchronous-replication stalls (ALTER SYSTEM SET
	// synchronous_standby_names to a standby that never connects): only on a
	// server of the checker's own. StallEvery/StallFor: default 4s / 400ms.
	Stalls               bool
	StallEvery, StallFor time.Duration
	// Restarts stops the change stream and the worker abruptly and starts
	// them again, alternately, every RestartEvery (default 5s).
	Restarts     bool
	RestartEvery time.Duration
	// Parts starts the worker and the change stream (default: in this
	// process; a Parts of real processes kills them with real signals).
	Parts Parts
	// Quiescence is how long the checker waits after the run before it
	// compares every cached row with the database (default 3s).
	Quiescence time.Duration
	// ReadPath is the readers' read path: ReadLeases or ReadCacheAside
	// (default). NewReader, when set, replaces it.
	ReadPath string
	// NewReader builds the readers' read path instead of ReadPath.
	NewReader func(ReaderEnv) (Reader, error)
	// Logger receives progress lines at info level.
	Logger *slog.Logger
}

// Parts starts the long-running pieces the checker faults.
type Parts interface {
	// Start starts "worker" or "changes" with cfg; stop ends it abruptly
	// (a crash, not a graceful shutdown, where the implementation can).
	Start(ctx context.Context, what string, env PartEnv) (stop func() error, err error)
}

// PathFigures are one write path's figures.
type PathFigures struct {
	Path   string `json:"path"`
	Writes int    `json:"writes"`
	Reads  int    `json:"reads"`
	// StaleReads returned a version older than one committed before the
	// read began; the window is how long after that commit the read was.
	StaleReads int     `json:"stale_reads"`
	P50Ms      float64 `json:"staleness_p50_ms"`
	P99Ms      float64 `json:"staleness_p99_ms"`
	MaxMs      float64 `json:"staleness_max_ms"`
	// ...OutsideOutages leave out reads whose window overlaps an injected
	// stall or restart.
	P99OutsideOutagesMs float64 `json:"staleness_p99_outside_outages_ms"`
	MaxOutsideOutagesMs float64 `json:"staleness_max_outside_outages_ms"`
	// StaleAfterQuiescence counts keys whose cached version is older than
	// the database's once the run ended and the quiescence passed.
	StaleAfterQuiescence int `json:"stale_after_quiescence"`
}

// ConsistencyReport is the checker's result.
type ConsistencyReport struct {
	Operations           int           `json:"operations"`
	ReadPath             string        `json:"read_path"`
	Seconds              float64       `json:"seconds"`
	StaleAfterQuiescence int           `json:"stale_after_quiescence"`
	Stalls               int           `json:"stalls"`
	Restarts             int           `json:"restarts"`
	Warms                int           `json:"warms"`
	Paths                []PathFigures `json:"paths"`
	// StaleKeys names up to 20 keys stale after quiescence, with versions.
	StaleKeys []string `json:"stale_keys,omitempty"`
}

func (o ConsistencyOptions) withDefaults() (ConsistencyOptions, error) {
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
	def(&o.Operations, 100000)
	def(&o.Keys, 200)
	def(&o.Writers, 4)
	def(&o.Readers, 4)
	def(&o.WriteRate, 300)
	def(&o.ReadRate, 2000)
	defD(&o.StallEvery, 4*time.Second)
	defD(&o.StallFor, 400*time.Millisecond)
	defD(&o.RestartEvery, 5*time.Second)
	defD(&o.Quiescence, 3*time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Parts == nil {
		o.Parts = InProcess{}
	}
	if o.Operations < 100 || o.Keys < 8 || o.Writers < 1 || o.Readers < 1 || o.WriteRate < -1 || o.WriteRate == 0 || o.ReadRate < -1 || o.ReadRate == 0 || o.StallFor >= o.StallEvery || o.RestartEvery < time.Second {
		return o, fmt.Errorf("%w: bench consistency: --operations at least 100, --keys at least 8, --writers and --readers at least 1, --write-rate and --read-rate positive or -1, --stall-for below --stall-every, --restart-every at least 1s", ErrInvalidOptions)
	}
	if kind, err := o.Database.DriverName(); err != nil || kind != "postgres" {
		return o, fmt.Errorf("%w: bench consistency needs --database-url of PostgreSQL with wal_level=logical (or none: a private one)", ErrInvalidOptions)
	}
	return o, nil
}

// checker is one run's state.
type checker struct {
	o       ConsistencyOptions
	e       *warmEnv
	hist    *history
	reader  Reader
	tables  map[string]string // cache -> table
	ops     atomic.Int64
	warms   atomic.Int64
	invq    string
	slot    string
	stallMu sync.Mutex
}

// Consistency runs the history checker: writers through every path,
// readers, warms of every kind and faults at once, on a hot set of keys;
// then a quiescence and a comparison of every cached row with the
// database.
func Consistency(ctx context.Context, opts ConsistencyOptions) (*ConsistencyReport, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	// Writers blocked in a stall hold their connections: room for them,
	// the readers, the final stall's writes and an in-process worker.
	o.Database.MaxOpenConns = max(o.Database.MaxOpenConns, o.Writers+o.Readers+finalKeys+16)
	wo, err := WarmOptions{RedisURL: o.RedisURL, Database: o.Database, Rows: o.Keys, PerKeyRows: 1, Rounds: 1, Logger: o.Logger}.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := newWarmEnv(ctx, wo)
	if err != nil {
		return nil, err
	}
	defer e.close()
	c := &checker{o: o, e: e, hist: newHistory(), tables: map[string]string{"item": e.schema + ".items", "app": e.schema + ".apps"}}
	if err := c.prepare(ctx); err != nil {
		return nil, err
	}
	slot := "ckc_" + e.prefix[len("ckbench-"):len(e.prefix)-1]
	c.slot = slot
	streamCfg := changes.Config{Queue: c.invq, Caches: e.cfg.Caches, Database: o.Database, Redis: e.rdb, Client: e.client,
		KeyPrefix: e.prefix + "ck:", Name: slot, StatusInterval: 100 * time.Millisecond, LeaseTTL: 2 * time.Second}
	defer func() {
		if err := c.stall(context.WithoutCancel(ctx), false); err != nil {
			o.Logger.Warn("bench consistency: could not reset synchronous_standby_names", slog.String("error", err.Error()))
		}
		cc := context.WithoutCancel(ctx)
		_, _ = e.db.ExecContext(cc, "SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1", slot)
		_, _ = e.db.ExecContext(cc, "DROP PUBLICATION IF EXISTS "+slot)
	}()
	parts := &running{c: c, env: PartEnv{Config: e.cfg, Stream: streamCfg, Redis: e.rdb, DB: e.db, Client: e.client, Logger: o.Logger}, stops: map[string]func() error{}}
	defer parts.stopAll()
	for _, what := range []string{"worker", "changes"} {
		if err := parts.start(ctx, what); err != nil {
			return nil, err
		}
	}
	if c.reader, err = c.newReader(); err != nil {
		return nil, err
	}
	start := time.Now()
	stalls, restarts, err := c.run(ctx, parts)
	if err != nil {
		return nil, err
	}
	if o.Stalls {
		if err := c.finalStall(ctx); err != nil {
			return nil, err
		}
		stalls++
	}
	seconds := time.Since(start).Seconds()
	o.Logger.Info("bench consistency: run over; quiescence", slog.Int64("operations", c.ops.Load()), slog.Duration("quiescence", o.Quiescence))
	if err := c.quiesce(ctx); err != nil {
		return nil, err
	}
	rep, err := c.report(ctx)
	if err != nil {
		return nil, err
	}
	rep.Seconds = float64(int(seconds*10)) / 10
	rep.Stalls, rep.Restarts, rep.Warms = stalls, restarts, int(c.warms.Load())
	return rep, nil
}

// prepare creates the two tables and the caches: item (followed by the
// change stream) and app (invalidated by the writers themselves).
func (c *checker) prepare(ctx context.Context) error {
	e := c.e
	stmts := []string{"CREATE SCHEMA " + e.schema, "CREATE TABLE " + e.schema + ".probe (x BIGINT)", "INSERT INTO " + e.schema + ".probe VALUES (0)"}
	for _, t := range c.tables {
		stmts = append(stmts, "CREATE TABLE "+t+" (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, grp BIGINT NOT NULL)",
			fmt.Sprintf("INSERT INTO %s SELECT i, 0, i FROM generate_series(1, %d) i", t, c.o.Keys))
	}
	for _, q := range stmts {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("bench consistency: %s: %w", q, err)
		}
	}
	spec := func(cache string) config.CacheSpec {
		t := c.tables[cache]
		return config.CacheSpec{Key: e.prefix + cache + ":{id}", TTL: time.Hour,
			ByIDs: "SELECT id, version, grp FROM " + t + " WHERE id IN (?)",
			All:   "SELECT id, version, grp FROM " + t + " WHERE id > ? ORDER BY id LIMIT ?"}
	}
	item, app := spec("item"), spec("app")
	item.Changes = config.ChangeSources{{Table: c.tables["item"], ID: "id"}}
	app.Tags = []string{"grp:{grp}"}
	e.cfg.Caches = map[string]config.CacheSpec{"item": item, "app": app}
	e.cfg.Worker.Concurrency = 8
	c.invq = e.queueOf[mustLookup(tasks.KindInvalidate).Queue]
	return e.cfg.Validate()
}

func (c *checker) newReader() (Reader, error) {
	env := ReaderEnv{Redis: c.e.rdb, DB: c.e.db, Client: c.e.client, Config: c.e.cfg}
	switch {
	case c.o.NewReader != nil:
		return c.o.NewReader(env)
	case c.o.ReadPath == ReadLeases:
		return LeaseReader(env)
	case c.o.ReadPath != "" && c.o.ReadPath != ReadCacheAside:
		return nil, fmt.Errorf("bench consistency: unknown read path %q (one of %v)", c.o.ReadPath, ReadPaths)
	}
	return &cacheAside{env: env, keyOf: func(cache, id string) string { return c.e.prefix + cache + ":" + id }, tables: c.tables}, nil
}

// cacheAside is the plain read path: HGET the cached hash; on a miss read
// the database and ask for a coalesced warm (fills go through the worker's
// fenced writes, never an unfenced SET by the reader).
type cacheAside struct {
	env    ReaderEnv
	keyOf  func(cache, id string) string
	tables map[string]string
}

func (r *cacheAside) Read(ctx context.Context, cache, id string) (int64, error) {
	v, err := r.env.Redis.HGet(ctx, r.keyOf(cache, id), "version").Result()
	if err == nil {
		return strconv.ParseInt(v, 10, 64)
	}
	if !errors.Is(err, redis.Nil) {
		return 0, err
	}
	var version int64
	if err := r.env.DB.GetContext(ctx, &version, "SELECT version FROM "+r.tables[cache]+" WHERE id = $1", id); err != nil {
		return 0, err
	}
	if err := r.env.Client.WarmCache(ctx, cache, id); err != nil {
		return 0, err
	}
	return version, nil
}

// run drives writers, readers, the warmer and the faults until the
// operations are done.
func (c *checker) run(ctx context.Context, parts *running) (stalls, restarts int, err error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	fail := func(err error) {
		if err != nil && rctx.Err() == nil {
			cancel(err)
		}
	}
	done := func() bool { return c.ops.Load() >= int64(c.o.Operations) || rctx.Err() != nil }
	for i := 0; i < c.o.Writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := newPacer(c.o.Writers, c.o.WriteRate)
			for !done() {
				fail(c.write(rctx))
				pace.wait(rctx)
			}
		}()
	}
	for i := 0; i < c.o.Readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := newPacer(c.o.Readers, c.o.ReadRate)
			for !done() {
				fail(c.read(rctx))
				pace.wait(rctx)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !done(); i++ {
			fail(c.warm(rctx, i))
			sleep(rctx, 20*time.Millisecond)
		}
	}()
	var faults sync.WaitGroup
	fctx, stopFaults := context.WithCancel(rctx)
	if c.o.Stalls {
		faults.Add(1)
		go func() {
			defer faults.Done()
			for sleep(fctx, c.o.StallEvery-c.o.StallFor) {
				from := time.Now()
				if err := c.stall(fctx, true); err != nil {
					fail(err)
					return
				}
				sleep(fctx, c.o.StallFor)
				fail(c.stall(context.WithoutCancel(fctx), false))
				c.hist.outage(from, time.Now())
				stalls++
			}
		}()
	}
	if c.o.Restarts {
		faults.Add(1)
		go func() {
			defer faults.Done()
			for i := 0; sleep(fctx, c.o.RestartEvery); i++ {
				what := []string{"changes", "worker"}[i%2]
				from := time.Now()
				if err := parts.restart(fctx, what); err != nil {
					fail(err)
					return
				}
				c.hist.outage(from, time.Now())
				restarts++
			}
		}()
	}
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	for !done() {
		select {
		case <-progress.C:
			c.o.Logger.Info("bench consistency: progress", slog.Int64("operations", c.ops.Load()), slog.Int("of", c.o.Operations))
		case <-time.After(50 * time.Millisecond):
		}
	}
	wg.Wait()
	stopFaults()
	faults.Wait()
	if err := context.Cause(rctx); err != nil && !errors.Is(err, context.Canceled) {
		return stalls, restarts, err
	}
	return stalls, restarts, ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stall turns the synchronous-replication stall on or off (a standby named
// that never connects: commits wait, flushed but invisible).
func (c *checker) stall(ctx context.Context, on bool) error {
	if !c.o.Stalls {
		return nil
	}
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	q := "ALTER SYSTEM RESET synchronous_standby_names"
	if on {
		q = "ALTER SYSTEM SET synchronous_standby_names = 'ckc_ghost'"
	}
	if _, err := c.e.db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("bench consistency: %s: %w", q, err)
	}
	if _, err := c.e.db.ExecContext(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("bench consistency: reload: %w", err)
	}
	return nil
}

// pick returns a random cache, id and path.
func (c *checker) pick() (cache, id, path string) {
	n := rand.IntN(c.o.Keys) + 1
	if rand.IntN(2) == 0 {
		return "item", strconv.Itoa(n), PathStream
	}
	return "app", strconv.Itoa(n), appPaths[n%len(appPaths)]
}

// write commits version+1 of one row, then invalidates through its path.
func (c *checker) write(ctx context.Context) error {
	cache, id, path := c.pick()
	var version int64
	err := c.e.db.GetContext(ctx, &version, "UPDATE "+c.tables[cache]+" SET version = version + 1 WHERE id = $1 RETURNING version", id)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench consistency: write: %w", err)
	}
	c.hist.commit(cache+":"+id, path, version, time.Now())
	c.ops.Add(1)
	key := c.e.prefix + cache + ":" + id
	switch path {
	case PathClient:
		_, err = c.e.client.Enqueue(ctx, &tasks.InvalidateArgs{Cache: cache, IDs: tasks.IDs{id}, Rewarm: version%2 == 0}, c.queue(tasks.KindInvalidate))
	case PathInbox:
		args, _ := json.Marshal(tasks.InvalidateArgs{Cache: cache, IDs: tasks.IDs{id}})
		entry, _ := json.Marshal(map[string]any{"kind": tasks.KindInvalidate, "args": json.RawMessage(args), "options": map[string]string{"queue": c.invq}})
		err = c.e.rdb.LPush(ctx, c.e.cfg.Inbox.Key, entry).Err()
	case PathTag:
		_, err = c.e.client.Enqueue(ctx, &tasks.InvalidateTagArgs{Tag: "grp:" + id}, c.queue(tasks.KindInvalidateTag))
	case PathPattern:
		_, err = c.e.client.Enqueue(ctx, &tasks.InvalidatePatternArgs{Pattern: key}, c.queue(tasks.KindInvalidatePattern))
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("bench consistency: invalidate through %s: %w", path, err)
	}
	return nil
}

// queue is the run's queue of a kind.
func (c *checker) queue(kind string) tasks.Option {
	return tasks.Queue(c.e.queueOf[mustLookup(kind).Queue])
}

// read reads one row through the reader and records what it returned.
func (c *checker) read(ctx context.Context) error {
	cache, id, path := c.pick()
	at := time.Now()
	v, err := c.reader.Read(ctx, cache, id)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench consistency: read: %w", err)
	}
	c.hist.read(cache+":"+id, path, v, at)
	c.ops.Add(1)
	return nil
}

// warm enqueues warms of every kind: by ids, coalesced, and a whole-table
// warm of each cache every 150th call.
func (c *checker) warm(ctx context.Context, i int) error {
	cache, id, _ := c.pick()
	var err error
	switch {
	case i%150 == 0:
		_, err = c.e.client.Enqueue(ctx, &tasks.WarmAllArgs{Cache: cache, Restart: true}, c.queue(tasks.KindWarmAll))
	case i%2 == 0:
		_, err = c.e.client.Enqueue(ctx, &tasks.WarmArgs{Cache: cache, IDs: tasks.IDs{id}}, c.queue(tasks.KindWarm))
	default:
		err = c.e.client.WarmCache(ctx, cache, id)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("bench consistency: warm: %w", err)
	}
	c.warms.Add(1)
	c.ops.Add(1)
	return nil
}

// pacer spaces one goroutine's operations so that n goroutines together
// make rate per second (rate -1: no pacing).
type pacer struct {
	every time.Duration
	next  time.Time
}

func newPacer(n, rate int) *pacer {
	p := &pacer{next: time.Now()}
	if rate > 0 {
		p.every = time.Duration(n) * time.Second / time.Duration(rate)
	}
	return p
}

func (p *pacer) wait(ctx context.Context) {
	if p.every == 0 {
		return
	}
	p.next = p.next.Add(p.every)
	if d := time.Until(p.next); d > 0 {
		sleep(ctx, d)
	} else {
		p.next = time.Now()
	}
}
