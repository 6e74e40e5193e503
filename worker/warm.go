package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
)

// specValidationTimeout bounds the start-up check of every cache spec
// against the database.
const specValidationTimeout = 30 * time.Second

// warmer is the state of the cache:warm and cache:warm_all handlers.
type warmer struct {
	specs map[string]*cachespec.Spec
	names []string
	fence *fence.Fencer
}

// newWarmer compiles the configured cache specs and checks each against the
// database, so that a spec whose query fails or whose key or tags name a
// column the query does not return stops the worker at start-up with an
// error naming the spec.
func (w *Worker) newWarmer() (*warmer, error) {
	if w.deps.DB == nil {
		return nil, errors.New("worker: caches are configured but Deps.DB is nil; set database.url")
	}
	specs, names, err := compileSpecs(w.cfg)
	if err != nil {
		return nil, err
	}
	wm := &warmer{specs: specs, names: names}
	validate := func(ctx context.Context) error { return validateSpecs(ctx, specs, names, w.deps.DB) }
	// database.go: validated now when the database answers, else once it does.
	if err := w.startDB(validate); err != nil {
		return nil, err
	}
	if wm.fence, err = fence.New(w.deps.Redis, w.keys, w.cfg.Fence.TTL); err != nil {
		return nil, err
	}
	return wm, nil
}

// CheckCaches runs the worker's start-up checks of the configured caches
// against db: every query probed (binding NULL, so no row is read) and the
// key and tag placeholders checked against the columns it returns. It
// returns the error the worker would refuse to start with; an error about
// a spec wraps ErrInvalidCache. `cachekeeper config check` runs it.
func CheckCaches(ctx context.Context, cfg config.Config, db *sqlx.DB) error {
	if len(cfg.Caches) == 0 {
		return nil
	}
	if db == nil {
		return errors.New("worker: caches are configured but no database is open; set database.url")
	}
	_, _, err := checkSpecs(ctx, cfg, db)
	return err
}

// ErrInvalidCache is wrapped by CheckCaches' (and New's) errors about a
// cache spec the database does not answer as configured: a configuration
// error rather than an outage.
var ErrInvalidCache = cachespec.ErrInvalidSpec

func checkSpecs(ctx context.Context, cfg config.Config, db *sqlx.DB) (map[string]*cachespec.Spec, []string, error) {
	specs, names, err := compileSpecs(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := validateSpecs(ctx, specs, names, db); err != nil {
		return nil, nil, err
	}
	return specs, names, nil
}

// compileSpecs compiles every configured cache spec; names are sorted.
func compileSpecs(cfg config.Config) (map[string]*cachespec.Spec, []string, error) {
	specs, err := cachespec.CompileAll(cfg.Caches)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, 0, len(specs))
	for name := range specs {
		names = append(names, name)
	}
	sort.Strings(names)
	return specs, names, nil
}

// validateSpecs probes every spec against db, in name order.
func validateSpecs(ctx context.Context, specs map[string]*cachespec.Spec, names []string, db *sqlx.DB) error {
	for _, name := range names {
		if err := specs[name].Validate(ctx, db); err != nil {
			return err
		}
	}
	return nil
}

// registerWarm registers the warming family when caches are configured.
func (w *Worker) registerWarm() error {
	if len(w.cfg.Caches) == 0 {
		return nil
	}
	wm, err := w.newWarmer()
	if err != nil {
		return err
	}
	w.warm = wm
	Handle(w.mux, w.handleWarm)
	Handle(w.mux, w.handleWarmAll)
	w.kinds = append(w.kinds, tasks.KindWarm, tasks.KindWarmAll)
	return w.registerCoalescer()
}

func (wm *warmer) spec(name string) (*cachespec.Spec, error) {
	s, ok := wm.specs[name]
	if !ok {
		return nil, fmt.Errorf("unknown cache %q (configured: %s): %w", name, strings.Join(wm.names, ", "), asynq.SkipRetry)
	}
	return s, nil
}

// warmStats counts what a warm did.
type warmStats struct {
	Rows     int `json:"rows"`
	Written  int `json:"written"`
	Deleted  int `json:"deleted"`
	Skipped  int `json:"skipped"`
	Unkeyed  int `json:"unkeyed,omitempty"`
	Unmapped int `json:"unmapped,omitempty"`
	Invalid  int `json:"invalid,omitempty"`
	// InvalidIDs are the first ids the database rejected as values of the
	// id column (`cachekeeper enqueue warm --wait` names them).
	InvalidIDs []string `json:"invalid_ids,omitempty"`
	Queries    int      `json:"queries"`
}

// maxInvalidIDs caps warmStats.InvalidIDs.
const maxInvalidIDs = 20

func (a *warmStats) add(b warmStats) {
	a.Rows += b.Rows
	a.Written += b.Written
	a.Deleted += b.Deleted
	a.Skipped += b.Skipped
	a.Unkeyed += b.Unkeyed
	a.Unmapped += b.Unmapped
	a.Invalid += b.Invalid
	a.InvalidIDs = appendCapped(a.InvalidIDs, b.InvalidIDs)
	a.Queries += b.Queries
}

// handleWarm refreshes the cached hashes of ids: one SQL query and one Redis
// round trip per chunk of ids, each write fenced by a stamp taken before the
// chunk's query.
func (w *Worker) handleWarm(ctx context.Context, job *Job[tasks.WarmArgs]) error {
	spec, err := w.warm.spec(job.Args.Cache)
	if err != nil {
		return err
	}
	if err := w.needDB(); err != nil {
		return err
	}
	ids := cachespec.Dedupe(job.Args.IDs)
	var total warmStats
	for _, chunk := range cachespec.Chunks(ids, w.cfg.Warm.ChunkSize) {
		st, err := w.warmChunk(ctx, spec, chunk, job.ID)
		total.add(st)
		if err != nil {
			return err
		}
	}
	if rw := job.Task.ResultWriter(); rw != nil {
		if data, err := json.Marshal(total); err == nil {
			_, _ = rw.Write(data)
		}
	}
	return nil
}

// warmChunk reads and writes one chunk of ids. The stamp is taken before the
// query; if the fence says the stamp is older than the fence TTL (the read
// was that slow), it takes a new stamp and reads again, once.
func (w *Worker) warmChunk(ctx context.Context, spec *cachespec.Spec, ids []string, taskID string) (warmStats, error) {
	var st warmStats
	for attempt := 0; ; attempt++ {
		stamp, err := w.warm.fence.Begin(ctx)
		if err != nil {
			return st, err
		}
		b, err := spec.ReadIDs(ctx, w.queryDB(), ids)
		if err != nil {
			return st, err
		}
		st.Queries++
		res, err := w.writeBatch(ctx, spec, stamp, b, tasks.KindWarm, taskID)
		if err != nil {
			return st, err
		}
		if res.TooOld {
			if attempt == 0 {
				w.logger.LogAttrs(ctx, slog.LevelWarn, "warm read took longer than the fence TTL; reading again",
					slog.String("cache", spec.Name()), slog.Duration("fence_ttl", w.cfg.Fence.TTL))
				continue
			}
			return st, fmt.Errorf("cache %q: database read took longer than fence.ttl (%s) twice; raise fence.ttl or shrink warm.chunk_size", spec.Name(), w.cfg.Fence.TTL)
		}
		st.Rows += b.Rows
		st.Written += res.Written
		st.Deleted += res.Deleted
		st.Skipped += len(res.Skipped)
		st.Unkeyed += b.Unkeyed
		st.Unmapped += len(b.Unmapped)
		st.Invalid += len(b.Invalid)
		st.InvalidIDs = appendCapped(st.InvalidIDs, b.Invalid)
		if len(b.Invalid) > 0 {
			w.logger.LogAttrs(ctx, slog.LevelWarn, "ids rejected by the database as values of the id column; skipped",
				slog.String("cache", spec.Name()), slog.Any("ids", capList(b.Invalid, 20)))
		}
		if b.Unkeyed > 0 {
			w.logger.LogAttrs(ctx, slog.LevelWarn, "rows with a NULL key column skipped",
				slog.String("cache", spec.Name()), slog.Int("rows", b.Unkeyed))
		}
		if len(b.Unmapped) > 0 {
			w.logger.LogAttrs(ctx, slog.LevelDebug, "ids with no row whose key cannot be rendered from the id; nothing deleted",
				slog.String("cache", spec.Name()), slog.Any("ids", capList(b.Unmapped, 20)))
		}
		return st, nil
	}
}

// tagTTLMargin is how much longer than its keys a tag set lives.
const tagTTLMargin = time.Minute

// maxTagMembersPerCall keeps unpack() well under Lua's stack limit.
const maxTagMembersPerCall = 1000

// writeBatch applies a batch with one fenced write (one round trip): tag
// memberships go first in the same pipeline, so a key is in its tag sets
// before it exists (an invalidation of the tag in between advances the key's
// fence and the write is refused). It then counts, logs and publishes.
func (w *Worker) writeBatch(ctx context.Context, spec *cachespec.Spec, stamp fence.Stamp, b *cachespec.Batch, kind, taskID string) (fence.Result, error) {
	var before func(redis.Pipeliner)
	if len(b.Tags) > 0 {
		// The set outlives every member: it is written just before the keys
		// (in the same round trip), so it gets a minute more than their TTL.
		ttl := (spec.MaxTTL() + tagTTLMargin).Milliseconds()
		before = func(pipe redis.Pipeliner) {
			for tag, members := range b.Tags {
				setKey := w.keys.Tag(tag)
				for len(members) > 0 {
					n := min(len(members), maxTagMembersPerCall)
					args := make([]any, 0, n+1)
					args = append(args, ttl)
					for _, m := range members[:n] {
						args = append(args, m)
					}
					redisx.TagAdd.Eval(ctx, pipe, []string{setKey}, args...)
					members = members[n:]
				}
			}
		}
	}
	res, err := w.warm.fence.WriteWith(ctx, stamp, spec.Name(), b.Entries, before)
	if err != nil {
		return res, fmt.Errorf("cache %q: %w", spec.Name(), err)
	}
	if res.TooOld {
		return res, nil
	}
	if len(b.Tags) > 0 {
		if err := w.unwriteFencedTags(ctx, stamp, b, &res); err != nil {
			return res, fmt.Errorf("cache %q: %w", spec.Name(), err)
		}
	}
	w.metrics.Keys.WithLabelValues(kind, "written").Add(float64(res.Written))
	w.metrics.Keys.WithLabelValues(kind, "deleted").Add(float64(res.Deleted))
	if len(res.Skipped) > 0 {
		w.metrics.Skipped.WithLabelValues(spec.Name()).Add(float64(len(res.Skipped)))
		w.logger.LogAttrs(ctx, slog.LevelDebug, "fenced writes skipped: invalidated after the read began",
			slog.String("cache", spec.Name()), slog.Int("skipped", len(res.Skipped)), slog.Any("keys", capList(res.Skipped, 20)))
	}
	w.publishBatch(ctx, spec.Name(), b, res, taskID)
	return res, nil
}

// unwriteFencedTags closes the one gap the key fences leave: a tag
// invalidation that captured its set after this warm's read began but before
// the warm added a new key to the set. Such a key's own fence never moved, so
// its write went through; the tag's fence did move, so the keys this batch
// wrote under that tag are invalidated (fenced) right away and counted as
// skipped.
func (w *Worker) unwriteFencedTags(ctx context.Context, stamp fence.Stamp, b *cachespec.Batch, res *fence.Result) error {
	tagOf := make(map[string]string, len(b.Tags))
	fenceKeys := make([]string, 0, len(b.Tags))
	for tag := range b.Tags {
		fk := w.keys.TagFence(tag)
		tagOf[fk] = tag
		fenceKeys = append(fenceKeys, fk)
	}
	fenced, err := w.warm.fence.FencedTags(ctx, stamp, fenceKeys)
	if err != nil || len(fenced) == 0 {
		return err
	}
	skipped := make(map[string]bool, len(res.Skipped))
	for _, k := range res.Skipped {
		skipped[k] = true
	}
	var stale []string
	for _, fk := range fenced {
		for _, k := range b.Tags[tagOf[fk]] {
			if !skipped[k] {
				skipped[k] = true
				stale = append(stale, k)
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	if _, err := w.warm.fence.Invalidate(ctx, stale); err != nil {
		return fmt.Errorf("invalidate keys of a tag invalidated during the warm: %w", err)
	}
	res.Written -= len(stale)
	res.Skipped = append(res.Skipped, stale...)
	return nil
}

// publishBatch sends one warmed event (and one deleted event when rows are
// gone) for a batch; skipped keys are left out.
func (w *Worker) publishBatch(ctx context.Context, cache string, b *cachespec.Batch, res fence.Result, taskID string) {
	if w.events == nil {
		return
	}
	var skipped map[string]struct{}
	if len(res.Skipped) > 0 {
		skipped = make(map[string]struct{}, len(res.Skipped))
		for _, k := range res.Skipped {
			skipped[k] = struct{}{}
		}
	}
	warmed := events.Event{Type: events.TypeWarmed, Cache: cache, TaskID: taskID}
	gone := events.Event{Type: events.TypeDeleted, Cache: cache, TaskID: taskID}
	for i, e := range b.Entries {
		if _, ok := skipped[e.Key]; ok {
			continue
		}
		ev := &warmed
		if len(e.Fields) == 0 {
			ev = &gone
		}
		ev.IDs = append(ev.IDs, b.IDs[i])
		ev.Keys = append(ev.Keys, e.Key) // the publisher caps the list it sends
		ev.KeyCount++
	}
	for _, ev := range []events.Event{warmed, gone} {
		if ev.KeyCount == 0 {
			continue
		}
		w.send.publish(ctx, tasks.KindWarm, ev)
	}
}

func capList(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	out := append([]string(nil), s[:n]...)
	return append(out, "... "+strconv.Itoa(len(s)-n)+" more")
}

func appendCapped(dst, src []string) []string {
	for _, id := range src {
		if len(dst) >= maxInvalidIDs {
			break
		}
		dst = append(dst, id)
	}
	return dst
}
