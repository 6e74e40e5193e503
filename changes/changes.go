// Package changes follows the database's own change stream (PostgreSQL
// logical replication with the built-in pgoutput plugin, or the MySQL/MariaDB
// row-based binlog) and turns row changes of the tables named in the caches'
// changes: blocks into the fenced invalidation jobs the worker runs, so that
// no write path (another service, a migration, a console UPDATE) can forget
// to invalidate.
//
// Guarantees:
//
//   - At least once: the slot's confirmed position (PostgreSQL) or the
//     binlog position kept in Redis (MySQL) advances only after every job of
//     every change up to it is enqueued; a crash replays from there.
//   - Nothing stale: the jobs are cache:invalidate jobs, which advance each
//     key's fence, so a warm whose read began before the invalidation cannot
//     write the old row back.
//   - Visible before applied: a transaction's jobs are enqueued only once
//     the commit is visible to new snapshots (see visible.go), so no warm
//     can cache a row version older than a commit the stream has applied.
//   - One reader: replicas share a Redis lease; the holder reads, the
//     others wait and take over within the lease TTL when it dies.
//
// The changes of one transaction are coalesced: ids of one cache go in jobs
// of up to Config.BatchSize ids.
package changes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Stream.
type Config struct {
	// Caches are the cache specs; those with a changes: block are followed.
	Caches map[string]config.CacheSpec
	// Database is the PostgreSQL or MySQL/MariaDB database to follow.
	Database config.DatabaseConfig
	// Redis holds the lease, the MySQL position and the status; jobs are
	// enqueued on it unless Client is set.
	Redis redis.UniversalClient
	// Client enqueues the jobs (default: one on Redis).
	Client *tasks.Client
	// TracerProvider, when set, makes a span per transaction, parent of
	// the jobs it enqueues (trace.go); give Client the same provider
	// (tasks.WithTracerProvider). The default client gets it.
	TracerProvider trace.TracerProvider
	// KeyPrefix is the prefix of cachekeeper's own keys (default "cachekeeper:").
	KeyPrefix string
	// Name names the stream: the PostgreSQL replication slot and the Redis
	// keys of the lease, position and status (default "cachekeeper").
	Name string
	// Publication is the PostgreSQL publication (default: Name).
	Publication string
	// BatchSize is the most ids one cache:invalidate job carries (default 5000).
	BatchSize int
	// Queue is the queue of the jobs (default: each kind's own).
	Queue string
	// LeaseTTL is how long a dead holder keeps the stream from the other
	// replicas (default 5s).
	LeaseTTL time.Duration
	// StatusInterval is how often the position is confirmed to the server
	// and the status written to Redis (default 1s).
	StatusInterval time.Duration
	// RetainedWALWarn logs a warning when the slot keeps more WAL than this
	// on the primary (default 1 GiB; PostgreSQL).
	RetainedWALWarn int64
	// ServerID is the replica server id the MySQL reader presents (default:
	// random in 1<<30..1<<31; must differ from every real replica's).
	ServerID uint32
	// Holder names this replica in the lease (default host:pid:random).
	Holder string
	// VisibilityTimeout is how long the stream waits for a delivered commit
	// to become visible to other sessions before it invalidates anyway and
	// repeats the invalidation at 3x, 12x and 60x this (default 10s).
	VisibilityTimeout time.Duration
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "cachekeeper"
	}
	if c.Publication == "" {
		c.Publication = c.Name
	}
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 5 * time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = time.Second
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 10 * time.Second
	}
	if c.RetainedWALWarn == 0 {
		c.RetainedWALWarn = 1 << 30
	}
	if c.Holder == "" {
		host, _ := os.Hostname()
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		c.Holder = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b)
	}
	if c.ServerID == 0 {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.ServerID = 1<<30 | (uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))&(1<<30-1)
	}
}

func (c *Config) validate() error {
	if c.Redis == nil {
		return errors.New("changes: Config.Redis is required")
	}
	if !validSlotName(c.Name) {
		return fmt.Errorf("changes: stream name %q must be 1-63 lower-case letters, digits or _ (it names the PostgreSQL replication slot)", c.Name)
	}
	if !validSlotName(c.Publication) {
		return fmt.Errorf("changes: publication %q must be 1-63 lower-case letters, digits or _", c.Publication)
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		return fmt.Errorf("changes: batch size must be between 1 and 100000, got %d", c.BatchSize)
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("changes: lease TTL must be at least 1s, got %s", c.LeaseTTL)
	}
	if c.StatusInterval < 10*time.Millisecond || c.StatusInterval > c.LeaseTTL {
		return fmt.Errorf("changes: status interval must be between 10ms and the lease TTL (%s), got %s", c.LeaseTTL, c.StatusInterval)
	}
	if c.VisibilityTimeout < 10*time.Millisecond {
		return fmt.Errorf("changes: visibility timeout must be at least 10ms, got %s", c.VisibilityTimeout)
	}
	if len(tables(c.Caches)) == 0 {
		return fmt.Errorf("%w: no cache has a changes: block; add one such as changes: {table: users, id: id}", ErrSetup)
	}
	return nil
}

func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ErrSetup marks what the database or the configuration must change before
// the stream can run (wal_level, REPLICATION, binlog_format, a missing
// table); Run returns it instead of retrying.
var ErrSetup = errors.New("change stream setup")

func setupErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSetup, fmt.Sprintf(format, a...))
}

// source is one database's change stream.
type source interface {
	// prepare checks the server's settings, creates what is missing and
	// resolves the configured table names to qualified ones.
	prepare(ctx context.Context) (map[string]string, error)
	// stream applies changes until ctx ends or the connection fails.
	stream(ctx context.Context, a *applier, p *progress) error
	// position reads the server's view of the stream for Status.
	status(ctx context.Context, st *Status) error
	close()
}

// Stream reads one change stream. Build it with New; run it with Run.
type Stream struct {
	cfg     Config
	keys    keys.Keys
	client  *tasks.Client
	src     source
	lease   *lease
	metrics *Metrics
	logger  *slog.Logger
	kind    string
}

// New validates cfg and builds the stream for the database's kind.
// SQLite returns config.ErrNoChangeStream.
func New(cfg Config, logger *slog.Logger) (*Stream, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return nil, err
	}
	m, err := NewMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, keys: k, client: cfg.Client, metrics: m, logger: logger}
	if s.client == nil {
		s.client = tasks.NewClientFromRedis(cfg.Redis, tasks.WithKeyPrefix(cfg.KeyPrefix), tasks.WithTracerProvider(cfg.TracerProvider))
	}
	s.lease = &lease{rdb: cfg.Redis, key: k.ChangesLease(cfg.Name), holder: cfg.Holder, ttl: cfg.LeaseTTL}
	if s.kind, err = cfg.Database.DriverName(); err != nil {
		return nil, err
	}
	switch s.kind {
	case "postgres":
		s.src = newPostgres(cfg, m, logger)
	case "mysql":
		s.src, err = newMySQL(cfg, k, m, logger)
		if err != nil {
			return nil, err
		}
	default:
		return nil, config.ErrNoChangeStream
	}
	return s, nil
}

// Metrics returns the stream's collectors.
func (s *Stream) Metrics() *Metrics { return s.metrics }

// Run waits for the lease, then reads the stream until ctx ends; it gives
// the lease up on the way out. Connection failures are logged and retried
// (the lease is released meanwhile, so another replica may take over);
// setup problems (ErrSetup) are returned.
func (s *Stream) Run(ctx context.Context) error {
	defer s.src.close()
	waitingLogged := ""
	for {
		got, err := s.lease.acquire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.logger.Warn("changes: cannot take the lease; retrying", slog.String("error", err.Error()))
		}
		if !got {
			if holder := s.cfg.Redis.Get(ctx, s.lease.key).Val(); holder != waitingLogged && holder != "" {
				s.logger.Info("changes: another replica holds the stream; waiting to take over", slog.String("holder", holder))
				waitingLogged = holder
			}
			if !sleep(ctx, s.pollInterval()) {
				return nil
			}
			continue
		}
		waitingLogged = ""
		if err := s.cfg.Redis.SAdd(ctx, s.keys.ChangesStreams(), s.cfg.Name).Err(); err != nil && ctx.Err() == nil {
			s.logger.Debug("changes: stream name not recorded for the /caches page", slog.String("error", err.Error()))
		}
		s.logger.Info("changes: holding the stream", slog.String("stream", s.cfg.Name), slog.String("holder", s.cfg.Holder), slog.String("database", s.kind))
		s.metrics.Holder.Set(1)
		err = s.hold(ctx)
		s.metrics.Holder.Set(0)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.lease.release(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrSetup) {
			return err
		}
		s.logger.Warn("changes: stream interrupted; retrying in 1s", slog.String("error", err.Error()))
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
}

func (s *Stream) pollInterval() time.Duration {
	d := s.cfg.LeaseTTL / 10
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

// hold runs the stream while renewing the lease.
func (s *Stream) hold(ctx context.Context) error {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.renew(hctx, cancel)
	}()
	defer wg.Wait()
	defer cancel(nil)
	resolved, err := s.src.prepare(hctx)
	if err != nil {
		return err
	}
	a, err := newApplier(s.cfg.Caches, resolved, s.client, s.cfg.BatchSize, s.cfg.VisibilityTimeout, s.jobOptions(), s.metrics, s.logger)
	if err != nil {
		return err
	}
	if s.cfg.TracerProvider != nil {
		a.trace.tracer = s.cfg.TracerProvider.Tracer(tasks.TracerName)
	}
	// Background enqueues of an unconfirmed transaction end with hctx.
	defer func() { _ = a.wait() }()
	p := &progress{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.report(hctx, p)
	}()
	err = s.src.stream(hctx, a, p)
	if c := context.Cause(hctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

func (s *Stream) jobOptions() []tasks.Option {
	if s.cfg.Queue == "" {
		return nil
	}
	return []tasks.Option{tasks.Queue(s.cfg.Queue)}
}

// renew keeps the lease until ctx ends; it cancels the stream when the
// lease is lost or cannot be renewed within its TTL.
func (s *Stream) renew(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.lease.renew(ctx)
		switch {
		case err == nil:
			last = time.Now()
		case errors.Is(err, errLeaseLost):
			cancel(err)
			return
		case time.Since(last) > s.cfg.LeaseTTL*2/3:
			cancel(fmt.Errorf("changes: lease not renewed for %s: %w", time.Since(last).Round(time.Millisecond), err))
			return
		}
	}
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
