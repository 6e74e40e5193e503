package changes

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Op is the kind of a row change.
type Op uint8

// Row change kinds.
const (
	Insert Op = iota + 1
	Update
	Delete
	Truncate
)

func (o Op) String() string {
	switch o {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Truncate:
		return "truncate"
	}
	return "unknown"
}

// Row holds a changed row's columns in their text form; a column that is
// NULL or was not sent (an unchanged TOASTed value, a column outside the
// replica identity) is absent.
type Row map[string]string

// Change is one row change read from the stream.
type Change struct {
	// Table is schema.table (PostgreSQL) or database.table (MySQL).
	Table string
	Op    Op
	// Old is the row before an UPDATE or DELETE, as far as the stream sent it;
	// New the row after an INSERT or UPDATE.
	Old, New Row
}

// route is one changes: entry of one cache, resolved to its table.
type route struct {
	cache   string
	id      string
	tags    []keys.Template
	rewarm  bool
	pattern string // every key of the cache, for TRUNCATE
}

// batchKey groups ids into one cache:invalidate job.
type batchKey struct {
	cache  string
	rewarm bool
}

// inflightBatches is how many full batches of a transaction are enqueued
// in the background while its decoding goes on. The reader then spends no
// time waiting for Redis (10-20% of a 50k-row transaction's decoding on one
// core, measured with `cachekeeper bench changes`), and a transaction of a
// million rows still holds at most this many batches plus the one filling.
const inflightBatches = 2

// applier turns changes into fenced invalidation jobs, coalescing the ids of
// a transaction into batches of up to batchSize ids per job. A batch that
// fills is enqueued at once, in the background; flush waits for those and
// enqueues the rest, so the caller confirms a position only once every job
// of every change before it is enqueued.
type applier struct {
	routes    map[string][]route // by qualified table
	client    *tasks.Client
	opts      []tasks.Option
	batchSize int
	metrics   *Metrics
	logger    *slog.Logger

	ids      map[batchKey]map[string]struct{}
	order    []batchKey
	tags     map[string]struct{}
	patterns map[string]struct{}
	pending  int // changes added since the last flush

	// Full batches being enqueued in the background: sem bounds them, wg
	// counts them, bgErr is the first failure (the transaction is then not
	// confirmed, and replays).
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	bgErr error

	// Visibility of the transaction being decoded (see visible.go): its
	// proof, whether it was checked, and whether it is late (not proven
	// visible in time: its jobs are repeated at lateDelays).
	visibilityTimeout time.Duration
	proof             visibilityProof
	proven, late      bool
	unprovableLogged  bool

	// trace is the open transaction's span (trace.go).
	trace txTrace
}

// Tables returns the configured tables of caches, as written in the config.
func tables(caches map[string]config.CacheSpec) []string {
	seen := map[string]bool{}
	var out []string
	for _, spec := range caches {
		for _, c := range spec.Changes {
			if !seen[c.Table] {
				seen[c.Table] = true
				out = append(out, c.Table)
			}
		}
	}
	sort.Strings(out)
	return out
}

// newApplier builds the routes; resolved maps each configured table name to
// its qualified name.
func newApplier(caches map[string]config.CacheSpec, resolved map[string]string, client *tasks.Client, batchSize int, visibilityTimeout time.Duration, opts []tasks.Option, m *Metrics, logger *slog.Logger) (*applier, error) {
	a := &applier{routes: map[string][]route{}, client: client, opts: opts, batchSize: batchSize, metrics: m, logger: logger,
		sem: make(chan struct{}, inflightBatches), visibilityTimeout: visibilityTimeout}
	names := make([]string, 0, len(caches))
	for n := range caches {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := caches[name]
		keyTpl, err := keys.ParseTemplate(spec.Key)
		if err != nil {
			return nil, fmt.Errorf("caches.%s.key: %w", name, err)
		}
		for _, c := range spec.Changes {
			q, ok := resolved[c.Table]
			if !ok {
				return nil, fmt.Errorf("caches.%s.changes: table %q was not resolved", name, c.Table)
			}
			r := route{cache: name, id: c.ID, rewarm: c.ActionOrDefault() == config.ChangeRewarm, pattern: keyTpl.Pattern()}
			for _, t := range c.Tags {
				tpl, err := keys.ParseTemplate(t)
				if err != nil {
					return nil, fmt.Errorf("caches.%s.changes tag %q: %w", name, t, err)
				}
				r.tags = append(r.tags, tpl)
			}
			a.routes[q] = append(a.routes[q], r)
		}
	}
	a.reset()
	return a, nil
}

func (a *applier) reset() {
	a.ids = map[batchKey]map[string]struct{}{}
	a.order = a.order[:0]
	a.tags = map[string]struct{}{}
	a.patterns = map[string]struct{}{}
	a.pending = 0
	a.proof, a.proven, a.late = nil, false, false
}

// watched reports whether changes of table matter to any cache.
func (a *applier) watched(table string) bool { return len(a.routes[table]) > 0 }

// add records one change; a batch that reaches batchSize ids is enqueued at
// once (a transaction of a million rows is not held in memory).
func (a *applier) add(ctx context.Context, c Change) error {
	ctx = a.txContext(ctx) // trace.go
	rs := a.routes[c.Table]
	if len(rs) == 0 {
		return nil
	}
	a.metrics.Changes.WithLabelValues(c.Table, c.Op.String()).Inc()
	a.pending++
	for _, r := range rs {
		if c.Op == Truncate {
			a.logger.Warn("TRUNCATE: invalidating the whole cache by pattern", slog.String("table", c.Table),
				slog.String("cache", r.cache), slog.String("pattern", r.pattern))
			a.patterns[r.pattern] = struct{}{}
			continue
		}
		for _, row := range []Row{c.Old, c.New} {
			if row == nil {
				continue
			}
			if r.id != "" {
				if id, ok := row[r.id]; ok {
					if err := a.addID(ctx, batchKey{cache: r.cache, rewarm: r.rewarm}, id); err != nil {
						return err
					}
				}
			}
			for _, tpl := range r.tags {
				if tag, err := tpl.Render(func(n string) (string, bool) { v, ok := row[n]; return v, ok }); err == nil {
					a.tags[tag] = struct{}{}
				}
			}
		}
		if r.id != "" && c.Op == Delete {
			if _, ok := c.Old[r.id]; !ok {
				a.metrics.Unidentified.WithLabelValues(c.Table).Inc()
				a.logger.Warn("DELETE without the id column: the stream did not send it (set REPLICA IDENTITY FULL, or make the id column the primary key)",
					slog.String("table", c.Table), slog.String("column", r.id), slog.String("cache", r.cache))
			}
		}
	}
	return nil
}

func (a *applier) addID(ctx context.Context, k batchKey, id string) error {
	set, ok := a.ids[k]
	if !ok {
		set = map[string]struct{}{}
		a.ids[k] = set
		a.order = append(a.order, k)
	}
	set[id] = struct{}{}
	if len(set) >= a.batchSize {
		if err := a.ensureVisible(ctx); err != nil {
			return err
		}
		if err := a.enqueueBackground(ctx, k, set); err != nil {
			return err
		}
		a.ids[k] = make(map[string]struct{}, a.batchSize)
	}
	return nil
}

// enqueueBackground enqueues a full batch while the caller goes on
// decoding; it waits while inflightBatches are under way, and returns the
// first failure of an earlier one.
func (a *applier) enqueueBackground(ctx context.Context, k batchKey, set map[string]struct{}) error {
	if err := a.backgroundErr(); err != nil {
		return err
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-a.sem }()
		if err := a.enqueueIDs(ctx, k, set); err != nil {
			a.mu.Lock()
			if a.bgErr == nil {
				a.bgErr = err
			}
			a.mu.Unlock()
		}
	}()
	return nil
}

func (a *applier) backgroundErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bgErr
}

// wait returns once no background enqueue runs, with the first failure.
func (a *applier) wait() error {
	a.wg.Wait()
	return a.backgroundErr()
}

func (a *applier) enqueueIDs(ctx context.Context, k batchKey, set map[string]struct{}) error {
	if len(set) == 0 {
		return nil
	}
	ids := make(tasks.IDs, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	info, err := a.enqueue(ctx, &tasks.InvalidateArgs{Cache: k.cache, IDs: ids, Rewarm: k.rewarm})
	if err != nil {
		return fmt.Errorf("changes: enqueue invalidation of %d ids of cache %q: %w", len(ids), k.cache, err)
	}
	a.noteJob(info)
	a.logger.Debug("changes: enqueued", slog.String("cache", k.cache), slog.Int("ids", len(ids)))
	a.metrics.Batches.WithLabelValues(tasks.KindInvalidate).Inc()
	a.metrics.IDs.WithLabelValues(k.cache).Add(float64(len(ids)))
	return nil
}

// enqueue enqueues one job; a late transaction's job is enqueued again at
// each of lateDelays. It returns the first job's info.
func (a *applier) enqueue(ctx context.Context, p tasks.Payload) (*asynq.TaskInfo, error) {
	info, err := a.client.Enqueue(ctx, p, a.opts...)
	if err != nil || !a.late {
		return info, err
	}
	for _, d := range a.lateDelays() {
		if _, err := a.client.Enqueue(ctx, p, append([]tasks.Option{tasks.ProcessIn(d)}, a.opts...)...); err != nil {
			return info, err
		}
		a.metrics.VisibilityRepeats.Inc()
	}
	return info, nil
}

// flush enqueues everything added since the last flush. It returns only
// when every job is enqueued: the caller then confirms the position.
func (a *applier) flush(ctx context.Context) (err error) {
	if a.trace.span != nil {
		ctx = a.trace.ctx
		defer func() { a.endTx(err) }()
	}
	if err := a.wait(); err != nil {
		return err
	}
	if len(a.order) > 0 || len(a.tags) > 0 || len(a.patterns) > 0 {
		if err := a.ensureVisible(ctx); err != nil {
			return err
		}
	}
	for _, k := range a.order {
		if err := a.enqueueIDs(ctx, k, a.ids[k]); err != nil {
			return err
		}
	}
	tags := make([]string, 0, len(a.tags))
	for t := range a.tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		info, err := a.enqueue(ctx, &tasks.InvalidateTagArgs{Tag: t})
		if err != nil {
			return fmt.Errorf("changes: enqueue invalidation of tag %q: %w", t, err)
		}
		a.noteJob(info)
		a.metrics.Batches.WithLabelValues(tasks.KindInvalidateTag).Inc()
	}
	for p := range a.patterns {
		info, err := a.enqueue(ctx, &tasks.InvalidatePatternArgs{Pattern: p, AllowAll: strings.HasPrefix(p, "*")})
		if err != nil {
			return fmt.Errorf("changes: enqueue invalidation of pattern %q: %w", p, err)
		}
		a.noteJob(info)
		a.metrics.Batches.WithLabelValues(tasks.KindInvalidatePattern).Inc()
	}
	a.reset()
	return nil
}
