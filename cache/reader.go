package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// ErrNotFound is returned by Get when the database has no row for the id.
var ErrNotFound = errors.New("cache: no row for this id")

// ErrUnknownCache is wrapped by the error of a Get of a cache the
// configuration does not declare.
var ErrUnknownCache = errors.New("cache: unknown cache")

// Loader loads the row of id as the hash to cache (field name to value). A
// nil map with a nil error means there is no row (ErrNotFound).
type Loader func(ctx context.Context, id string) (map[string]string, error)

// Defaults of Options.
const (
	DefaultLeaseTTL          = 5 * time.Second
	DefaultEarlyRefreshDelta = time.Second
)

// Options configure a Reader.
type Options struct {
	// Redis is the server (or cluster) the worker writes (required).
	Redis redis.UniversalClient
	// DB runs the caches' by_ids queries. Without it, every read must pass
	// its own Loader (GetWith).
	DB *sqlx.DB
	// Logger receives what goes wrong in the background of a read (a failed
	// hit sample or early refresh); nil discards.
	Logger *slog.Logger
	// LeaseTTL is how long a granted lease lives: longer than the slowest
	// load (default 5s). It must be shorter than the configuration's
	// fence.ttl.
	LeaseTTL time.Duration
	// MaxWait bounds how long a Get waits for another reader's fill before it
	// loads the row itself, without caching it (default LeaseTTL).
	MaxWait time.Duration
	// EarlyRefresh turns on XFetch; it needs Tasks.
	EarlyRefresh EarlyRefresh
	// Tasks enqueues the rewarms early refresh asks for.
	Tasks *tasks.Client
	// NoSingleFlight makes every Get talk to Redis on its own, as separate
	// processes would (benchmarks and tests of the protocol).
	NoSingleFlight bool
}

// EarlyRefresh configures XFetch: a hit whose key expires in pttl asks the
// worker for a rewarm when Delta*Beta*-ln(rand()) >= pttl.
type EarlyRefresh struct {
	// Beta scales how early refreshes start (1 is the paper's optimum; 0
	// turns early refresh off).
	Beta float64
	// Delta is how long a rewarm takes to land once asked for (default 1s).
	Delta time.Duration
	// Queue is the queue of the rewarm jobs (default: the cache:warm kind's).
	Queue string
}

// Reader reads cached objects. It is safe for concurrent use.
type Reader struct {
	opts   Options
	logger *slog.Logger
	keys   keys.Keys
	caller *redisx.Caller
	fencer *fence.Fencer
	maxAge time.Duration
	caches map[string]*cacheState
	names  []string
	sf     singleflight.Group
	count  counters
}

// cacheState is one cache as a Reader sees it.
type cacheState struct {
	spec    *cachespec.Spec
	refresh config.RefreshAhead
	hot     string
	// touched and refreshed hold, per id, when this process last recorded a
	// hit of it and last asked for an early refresh (bounded; see remember).
	mu        sync.Mutex
	touched   map[string]time.Time
	refreshed map[string]time.Time
}

// New returns a Reader of the caches of cfg (cfg.Caches, cfg.KeyPrefix,
// cfg.Fence.TTL). With opts.DB set, every cache's queries are checked
// against the database first, as the worker checks them at start.
func New(ctx context.Context, cfg config.Config, opts Options) (*Reader, error) {
	if opts.Redis == nil {
		return nil, errors.New("cache: Options.Redis is required")
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.LeaseTTL < 10*time.Millisecond {
		return nil, fmt.Errorf("cache: LeaseTTL %s is too short (at least 10ms; longer than the slowest load)", opts.LeaseTTL)
	}
	fenceTTL := cfg.Fence.TTL
	if fenceTTL == 0 {
		fenceTTL = time.Hour
	}
	if opts.LeaseTTL >= fenceTTL {
		return nil, fmt.Errorf("cache: LeaseTTL %s must be shorter than fence.ttl %s (a fence must outlive every lease)", opts.LeaseTTL, fenceTTL)
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = opts.LeaseTTL
	}
	if opts.EarlyRefresh.Beta < 0 {
		return nil, fmt.Errorf("cache: EarlyRefresh.Beta must be 0 (off) or positive, got %v", opts.EarlyRefresh.Beta)
	}
	if opts.EarlyRefresh.Beta > 0 && opts.Tasks == nil {
		return nil, errors.New("cache: EarlyRefresh needs Options.Tasks to ask the worker for rewarms")
	}
	if opts.EarlyRefresh.Delta == 0 {
		opts.EarlyRefresh.Delta = DefaultEarlyRefreshDelta
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	specs, err := cachespec.CompileAll(cfg.Caches)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	fencer, err := fence.New(opts.Redis, k, fenceTTL)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	r := &Reader{opts: opts, logger: opts.Logger, keys: k, caller: redisx.NewCaller(opts.Redis), fencer: fencer,
		maxAge: opts.LeaseTTL, caches: map[string]*cacheState{}}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	for name, spec := range specs {
		if opts.DB != nil {
			if err := spec.Validate(ctx, opts.DB); err != nil {
				return nil, fmt.Errorf("cache: %w", err)
			}
		}
		cs := cfg.Caches[name]
		r.caches[name] = &cacheState{spec: spec, refresh: cs.RefreshAhead.WithDefaults(cs.TTL), hot: k.Hot(name),
			touched: map[string]time.Time{}, refreshed: map[string]time.Time{}}
		r.names = append(r.names, name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Get returns the cached hash of id in cache, loading it with the cache's
// by_ids query on a miss. id is a string or an integer, as tasks.ID takes it.
func (r *Reader) Get(ctx context.Context, cache string, id any) (map[string]string, error) {
	return r.GetWith(ctx, cache, id, nil)
}

// GetWith is Get with the caller's loader (nil: the cache's by_ids query).
// The loader's hash is cached as it is: render values the way the worker
// does (docs/read-protocol.md, "Values") if the worker also warms the cache.
func (r *Reader) GetWith(ctx context.Context, cache string, id any, load Loader) (map[string]string, error) {
	c, ok := r.caches[cache]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownCache, cache, strings.Join(r.names, ", "))
	}
	sid, err := tasks.ID(id)
	if err != nil {
		return nil, fmt.Errorf("cache %q: %w", cache, err)
	}
	key, ok := c.spec.KeyForID(sid)
	if !ok {
		return nil, fmt.Errorf("cache %q: its key template %q names columns other than %q, so the key of an id cannot be known before the row is read", cache, c.spec.KeyTemplate().String(), c.spec.IDColumn())
	}
	var lf loadFunc
	switch {
	case load != nil:
		lf = loaderFunc(load)
	case r.opts.DB == nil:
		return nil, fmt.Errorf("cache %q: no Options.DB to run its by_ids query; pass a Loader to GetWith", cache)
	default:
		lf = r.specLoad(c)
	}
	if r.opts.NoSingleFlight {
		return r.read(ctx, c, sid, key, lf)
	}
	ch := r.sf.DoChan(cache+"\x00"+sid, func() (any, error) {
		// The shared read outlives a caller that gives up, so that the
		// others still get its result; it keeps the leader's values.
		return r.read(context.WithoutCancel(ctx), c, sid, key, lf)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return maps.Clone(res.Val.(map[string]string)), nil
	}
}

// token returns a random lease token.
func token() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
