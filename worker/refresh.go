package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/pace"
)

// Refresh-ahead (caches.<name>.refresh_ahead): readers of the read path
// record a sample of their hits in the cache's hot set (keys.Hot, ids scored
// by the server time of the read); every interval one worker of the fleet
// takes the ids read within read_within whose keys expire within
// before_expiry and rewarms them with the warm's fenced writes, in chunks of
// warm.chunk_size (paced like maintenance when there is more than one). A
// key nobody reads is not in the set and expires.

// maxRefreshIDs bounds the ids one pass reads from a hot set.
const maxRefreshIDs = 10000

// registerRefreshAhead adds one loop per cache with refresh_ahead enabled.
func (w *Worker) registerRefreshAhead() {
	if w.warm == nil {
		return
	}
	var names []string
	for _, name := range w.warm.names {
		if w.cfg.Caches[name].RefreshAhead.Enabled {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	w.addRunner("refresh-ahead", func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		for _, name := range names {
			g.Go(func() error { return w.refreshLoop(ctx, name) })
		}
		return g.Wait()
	})
}

// refreshLoop runs a pass every interval until ctx ends; a failed pass is
// logged and retried at the next interval.
func (w *Worker) refreshLoop(ctx context.Context, cache string) error {
	cs := w.cfg.Caches[cache]
	ra := cs.RefreshAhead.WithDefaults(cs.TTL)
	t := time.NewTicker(ra.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := w.refreshPass(ctx, cache, ra)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.logger.LogAttrs(ctx, slog.LevelWarn, "refresh-ahead pass failed", slog.String("cache", cache), slog.Any("error", err))
			continue
		}
		if st.due > 0 {
			w.logger.LogAttrs(ctx, slog.LevelDebug, "refresh-ahead pass", slog.String("cache", cache),
				slog.Int("read", st.read), slog.Int("due", st.due), slog.Int("refreshed", st.refreshed))
		}
	}
}

// refreshStats counts what a pass did.
type refreshStats struct {
	read, due, refreshed int
}

// refreshPass runs one pass over cache's hot set (when no other worker ran
// one this interval).
func (w *Worker) refreshPass(ctx context.Context, cache string, ra config.RefreshAhead) (refreshStats, error) {
	var st refreshStats
	rdb := w.deps.Redis
	// The marker lives a little less than an interval, so that this worker's
	// next tick never finds its own marker.
	ok, err := rdb.SetNX(ctx, w.keys.RefreshAheadMarker(cache), time.Now().UTC().Format(time.RFC3339), ra.Interval*9/10).Result()
	if err != nil || !ok {
		return st, err
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return st, fmt.Errorf("read the Redis clock: %w", err)
	}
	hot := w.keys.Hot(cache)
	since := now.Add(-ra.ReadWithin).UnixMilli()
	pipe := rdb.Pipeline()
	pipe.ZRemRangeByScore(ctx, hot, "-inf", "("+strconv.FormatInt(since, 10))
	idsCmd := pipe.ZRangeArgs(ctx, redis.ZRangeArgs{Key: hot, Start: strconv.FormatInt(since, 10), Stop: "+inf", ByScore: true, Count: maxRefreshIDs})
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return st, fmt.Errorf("read the hot set: %w", err)
	}
	ids := idsCmd.Val()
	st.read = len(ids)
	spec := w.warm.specs[cache]
	due, err := w.nearExpiry(ctx, spec, ids, ra.BeforeExpiry)
	if err != nil {
		return st, err
	}
	st.due = len(due)
	if len(due) == 0 {
		return st, nil
	}
	warm := func(ctx context.Context, chunk []string) error {
		ws, err := w.warmChunk(ctx, spec, chunk, "")
		st.refreshed += ws.Written
		return err
	}
	if len(due) <= w.cfg.Warm.ChunkSize {
		// One chunk: a pacer would first wait out its calibration window,
		// which the keys near expiry may not have.
		err = warm(ctx, due)
	} else {
		pacer := paced(rdb, w.cfg.Pace)
		err = pace.Chunks(ctx, pacer, w.cfg.Warm.ChunkSize, due, warm)
		pacer.Stop()
	}
	w.metrics.RefreshAhead.WithLabelValues(cache, "refreshed").Add(float64(st.refreshed))
	w.metrics.RefreshAhead.WithLabelValues(cache, "skipped").Add(float64(st.due - st.refreshed))
	return st, err
}

// nearExpiry returns the ids whose keys exist and expire within before.
func (w *Worker) nearExpiry(ctx context.Context, spec *cachespec.Spec, ids []string, before time.Duration) ([]string, error) {
	type cand struct {
		id  string
		ttl *redis.DurationCmd
	}
	var out []string
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		pipe := w.deps.Redis.Pipeline()
		cands := make([]cand, 0, n)
		for _, id := range ids[:n] {
			key, ok := spec.KeyForID(id)
			if !ok {
				continue
			}
			cands = append(cands, cand{id, pipe.PTTL(ctx, key)})
		}
		ids = ids[n:]
		if len(cands) == 0 {
			continue
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read the TTLs of read keys: %w", err)
		}
		for _, c := range cands {
			// A missing key (-2) is filled by its next reader's lease; a key
			// without TTL (-1) is not ours to refresh.
			if d := c.ttl.Val(); d > 0 && d < before {
				out = append(out, c.id)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
