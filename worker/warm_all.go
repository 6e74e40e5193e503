package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// WarmAllProgress is what a cache:warm_all task writes to its asynq result,
// at most every progressInterval and when it ends. Read it with
// asynq.Inspector.GetTaskInfo(...).Result.
type WarmAllProgress struct {
	Cache string `json:"cache"`
	// RowsDone counts rows warmed so far, including those of earlier runs
	// this one resumed from.
	RowsDone int64 `json:"rows_done"`
	// Total is the number of rows at the start (COUNT(*) of the all query),
	// 0 when it was not cheap to know.
	Total int64 `json:"total,omitempty"`
	// RowsPerS is the rate of this run.
	RowsPerS float64 `json:"rows_per_s"`
	// ResumedFrom is RowsDone of the checkpoint this run started from.
	ResumedFrom int64   `json:"resumed_from,omitempty"`
	Written     int64   `json:"written"`
	Skipped     int64   `json:"skipped"`
	ElapsedS    float64 `json:"elapsed_s"`
	Done        bool    `json:"done"`
	// Pace holds the pacer's figures (batch, keys_per_s, added_latency_ms,
	// budget_ms, round_trip_ms, pause_ms, slowdowns) when writes are paced.
	Pace json.RawMessage `json:"pace,omitempty"`
}

// warmAllCheckpoint is the position of a whole-table warm, saved after every
// page under keys.WarmAllCheckpoint(cache) as JSON.
type warmAllCheckpoint struct {
	// TaskID is the task that wrote it.
	TaskID string `json:"task_id"`
	// LastID is the id of the last row written; LastIDInt says it was an
	// integer (so the next page binds an integer).
	LastID    string    `json:"last_id"`
	LastIDInt bool      `json:"last_id_int,omitempty"`
	RowsDone  int64     `json:"rows_done"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const (
	// checkpointTTL lets an abandoned checkpoint go away on its own.
	checkpointTTL = 7 * 24 * time.Hour
	// progressInterval is how often progress is written at most.
	progressInterval = 500 * time.Millisecond
	// countTimeout bounds the COUNT(*) that gives progress a total.
	countTimeout = 2 * time.Second
)

func (c *warmAllCheckpoint) last() any {
	if c.LastIDInt {
		if n, err := strconv.ParseInt(c.LastID, 10, 64); err == nil {
			return n
		}
	}
	return c.LastID
}

func (c *warmAllCheckpoint) setLast(v any) {
	s, _ := sqldb.Format(v)
	c.LastID = s
	switch v.(type) {
	case int64, int32, int:
		c.LastIDInt = true
	default:
		c.LastIDInt = false
	}
}

// handleWarmAll streams the whole table of a cache into Redis with keyset
// pages, in bounded memory (at most three pages: one being read, one
// waiting, one being written). The read of the next page overlaps the write
// of the current one; each page's fence stamp is taken before its read. The
// position is checkpointed after every page, so a crashed or restarted run
// resumes where it stopped; Restart starts over. The checkpoint is deleted
// when the table is done.
func (w *Worker) handleWarmAll(ctx context.Context, job *Job[tasks.WarmAllArgs]) error {
	spec, err := w.warm.spec(job.Args.Cache)
	if err != nil {
		return err
	}
	if err := w.needDB(); err != nil {
		return err
	}
	if !spec.HasAll() {
		return fmt.Errorf("cache %q has no `all` query (caches.%s.all: \"SELECT ... WHERE id > ? ORDER BY id LIMIT ?\"): %w",
			spec.Name(), spec.Name(), asynq.SkipRetry)
	}
	ckKey := w.keys.WarmAllCheckpoint(spec.Name())
	cp, err := w.loadCheckpoint(ctx, ckKey)
	if err != nil {
		return err
	}
	// A restart ignores a checkpoint, unless this very task wrote it (a
	// retry of the restarting task resumes what it already did).
	if cp != nil && job.Args.Restart && cp.TaskID != job.ID {
		cp = nil
	}
	now := time.Now()
	after := spec.Start()
	prog := WarmAllProgress{Cache: spec.Name()}
	if cp != nil {
		after = cp.last()
		prog.RowsDone, prog.ResumedFrom = cp.RowsDone, cp.RowsDone
		w.logger.LogAttrs(ctx, slog.LevelInfo, "warm_all resumes from checkpoint", slog.String("cache", spec.Name()),
			slog.String("last_id", cp.LastID), slog.Int64("rows_done", cp.RowsDone))
	} else {
		cp = &warmAllCheckpoint{StartedAt: now}
	}
	cp.TaskID = job.ID

	pageSize := w.cfg.Warm.PageSize
	var lim *rate.Limiter
	maxRate := job.Args.MaxKeysPerSecond
	if maxRate == 0 {
		maxRate = w.cfg.Warm.MaxKeysPerSecond
	}
	if maxRate > 0 {
		pageSize = min(pageSize, maxRate)
		lim = rate.NewLimiter(rate.Limit(maxRate), pageSize)
	}

	// Writes are paced by Redis's latency: the page size follows the
	// pacer's batch size, and the pacer's pause comes before each write.
	pacer := paced(w.deps.Redis, w.cfg.Pace)
	defer pacer.Stop()

	countCtx, stopCount := context.WithTimeout(ctx, countTimeout)
	totalCh := make(chan int64, 1)
	go func() { totalCh <- w.countAll(countCtx, spec) }()
	defer func() { stopCount(); <-totalCh }()

	pw := &progressWriter{rw: job.Task.ResultWriter(), start: now}
	type page struct {
		stamp fence.Stamp
		after any
		b     *cachespec.Batch
		size  int
	}
	pages := make(chan page, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // stage 1: stamp, then read
		defer close(pages)
		cur := after
		for {
			stamp, err := w.warm.fence.Begin(gctx)
			if err != nil {
				return err
			}
			size := pageSize
			if n := pacer.Batch(); n > 0 {
				size = min(size, n)
			}
			b, err := spec.ReadPage(gctx, w.queryDB(), cur, size)
			if err != nil {
				return err
			}
			if b.Rows > 0 && (b.Last == nil || sameID(b.Last, cur)) {
				return fmt.Errorf("cache %q: the all query does not move forward after id %v; it must filter on the id column (> ?) and ORDER BY it: %w",
					spec.Name(), cur, asynq.SkipRetry)
			}
			select {
			case pages <- page{stamp, cur, b, size}:
			case <-gctx.Done():
				return gctx.Err()
			}
			if b.Rows < size {
				return nil
			}
			cur = b.Last
		}
	})
	g.Go(func() error { // stage 2: rate, fenced write, checkpoint, progress
		for p := range pages {
			if p.b.Rows == 0 {
				continue
			}
			if lim != nil && len(p.b.Entries) > 0 {
				if err := lim.WaitN(gctx, len(p.b.Entries)); err != nil {
					return err
				}
			}
			var res fence.Result
			err := pacer.Do(gctx, len(p.b.Entries), func(ctx context.Context) error {
				var err error
				res, err = w.writeBatch(ctx, spec, p.stamp, p.b, tasks.KindWarmAll, job.ID)
				return err
			})
			if err != nil {
				return err
			}
			if res.TooOld {
				if res, err = w.rereadPage(gctx, spec, p.after, p.size, job.ID); err != nil {
					return err
				}
			}
			prog.RowsDone += int64(p.b.Rows)
			prog.Written += int64(res.Written)
			prog.Skipped += int64(len(res.Skipped))
			cp.setLast(p.b.Last)
			cp.RowsDone = prog.RowsDone
			cp.UpdatedAt = time.Now()
			if err := w.saveCheckpoint(gctx, ckKey, cp); err != nil {
				return err
			}
			select {
			case t := <-totalCh:
				prog.Total = t
				totalCh <- t // keep it for the deferred receive
			default:
			}
			if pacer != nil {
				prog.Pace, _ = json.Marshal(pacer.Stats())
			}
			pw.maybeWrite(&prog, false)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		pw.maybeWrite(&prog, true)
		return fmt.Errorf("warm_all %q after %d rows (checkpoint kept, a retry resumes): %w", spec.Name(), prog.RowsDone, err)
	}
	if err := w.deps.Redis.Del(ctx, ckKey).Err(); err != nil {
		return fmt.Errorf("warm_all %q: delete checkpoint: %w", spec.Name(), err)
	}
	prog.Done = true
	pw.maybeWrite(&prog, true)
	attrs := []slog.Attr{slog.String("cache", spec.Name()), slog.Int64("rows", prog.RowsDone),
		slog.Int64("written", prog.Written), slog.Int64("skipped", prog.Skipped), slog.Float64("rows_per_s", prog.RowsPerS)}
	if pacer != nil {
		st := pacer.Stats()
		attrs = append(attrs, slog.String("pace_mode", st.Mode), slog.Float64("pace_others_commands_per_s", st.OthersPerS),
			slog.Float64("pace_busy_s", st.BusyS), slog.Float64("pace_quiet_s", st.QuietS))
	}
	w.logger.LogAttrs(ctx, slog.LevelInfo, "warm_all done", attrs...)
	return nil
}

// rereadPage takes a new stamp and reads and writes the page again, once:
// the first read was older than the fence TTL.
func (w *Worker) rereadPage(ctx context.Context, spec *cachespec.Spec, after any, pageSize int, taskID string) (fence.Result, error) {
	w.logger.LogAttrs(ctx, slog.LevelWarn, "warm_all page older than the fence TTL; reading it again", slog.String("cache", spec.Name()))
	stamp, err := w.warm.fence.Begin(ctx)
	if err != nil {
		return fence.Result{}, err
	}
	b, err := spec.ReadPage(ctx, w.queryDB(), after, pageSize)
	if err != nil {
		return fence.Result{}, err
	}
	res, err := w.writeBatch(ctx, spec, stamp, b, tasks.KindWarmAll, taskID)
	if err == nil && res.TooOld {
		err = fmt.Errorf("cache %q: a page read took longer than fence.ttl (%s) twice; raise fence.ttl or lower warm.page_size", spec.Name(), w.cfg.Fence.TTL)
	}
	return res, err
}

func sameID(a, b any) bool {
	x, _ := sqldb.Format(a)
	y, _ := sqldb.Format(b)
	return x == y
}

// countAll returns the number of rows of the all query, or 0 when it cannot
// be known within countTimeout.
func (w *Worker) countAll(ctx context.Context, spec *cachespec.Spec) int64 {
	n, err := spec.Count(ctx, w.queryDB())
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			w.logger.LogAttrs(ctx, slog.LevelDebug, "warm_all: no total", slog.String("cache", spec.Name()), slog.String("error", err.Error()))
		}
		return 0
	}
	return n
}

func (w *Worker) loadCheckpoint(ctx context.Context, key string) (*warmAllCheckpoint, error) {
	data, err := w.deps.Redis.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read warm_all checkpoint %s: %w", key, err)
	}
	var cp warmAllCheckpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		w.logger.Warn("unreadable warm_all checkpoint; starting over", slog.String("key", key), slog.String("error", err.Error()))
		return nil, nil
	}
	return &cp, nil
}

func (w *Worker) saveCheckpoint(ctx context.Context, key string, cp *warmAllCheckpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := w.deps.Redis.Set(ctx, key, data, checkpointTTL).Err(); err != nil {
		return fmt.Errorf("save warm_all checkpoint %s: %w", key, err)
	}
	return nil
}

// progressWriter writes WarmAllProgress to the task result, throttled.
type progressWriter struct {
	rw    *asynq.ResultWriter
	start time.Time
	last  time.Time
}

func (p *progressWriter) maybeWrite(prog *WarmAllProgress, force bool) {
	now := time.Now()
	if !force && now.Sub(p.last) < progressInterval {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	prog.ElapsedS = math.Round(el*1000) / 1000
	if el > 0 {
		prog.RowsPerS = math.Round(float64(prog.RowsDone-prog.ResumedFrom) / el)
	}
	if p.rw == nil {
		return
	}
	if data, err := json.Marshal(prog); err == nil {
		_, _ = p.rw.Write(data)
	}
}
