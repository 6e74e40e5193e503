package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RateLimitPruneReport is what a ratelimit:prune run did; it is the job's
// result (JSON) and the fields of its log line.
type RateLimitPruneReport struct {
	Pattern string `json:"pattern"`
	Window  string `json:"window"`
	// Scanned is how many sorted sets matched the pattern.
	Scanned int64 `json:"scanned"`
	// EntriesRemoved is how many members were older than now - window.
	EntriesRemoved int64 `json:"entries_removed"`
	// KeysDeleted is how many sets were emptied (Redis deletes an empty set).
	KeysDeleted int64 `json:"keys_deleted"`
	// TTLFixed is how many sets had no TTL and were given one window.
	TTLFixed int64 `json:"ttl_fixed"`
	// BytesReclaimed estimates the memory freed: BytesMeasured scaled from
	// the measured keys to every pruned key (exact when
	// rate_limits.memory_sample is 1). Nil when the server has no MEMORY
	// USAGE (miniredis) or measuring is off.
	BytesReclaimed *int64 `json:"bytes_reclaimed"`
	// BytesMeasured sums MEMORY USAGE before minus after over the measured
	// keys: one key in rate_limits.memory_sample, since measuring every
	// key costs about a quarter more Redis time.
	BytesMeasured     int64 `json:"bytes_measured"`
	BytesMeasuredKeys int64 `json:"bytes_measured_keys"`
	// Skipped counts keys that changed type between SCAN and the prune.
	Skipped    int64 `json:"skipped"`
	DurationMS int64 `json:"duration_ms"`
}

// pruneScript prunes a batch of sorted sets of one hash slot with the
// server's own clock. Entries with a score at or below now - window are
// removed (the FastAPI guide's ZREMRANGEBYSCORE 0 window_start); a set left
// empty is deleted by Redis itself; a set without TTL gets one window.
// MEMORY USAGE is taken before and after on every ARGV[4]-th key of the
// run, starting with the first.
//
// ARGV[1] window in microseconds, ARGV[2] microseconds per score unit,
// ARGV[3] TTL to restore in milliseconds, ARGV[4] memory sample (0: off),
// ARGV[5] offset of this batch in the run (for the sampling phase).
// Returns {removed, deleted, ttl fixed, bytes reclaimed, measured, skipped}.
var pruneScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local call, pcall = redis.call, redis.pcall
local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cutoff = string.format('%.6f', (now - tonumber(ARGV[1])) / tonumber(ARGV[2]))
local ttlms = ARGV[3]
local every = tonumber(ARGV[4])
local offset = tonumber(ARGV[5])
local removed, deleted, fixed, bytes, measured, skipped = 0, 0, 0, 0, 0, 0
for i = 1, #KEYS do
  local k = KEYS[i]
  local measure = every > 0 and (offset + i - 1) % every == 0
  local before = 0
  if measure then before = call('MEMORY', 'USAGE', k) or 0 end
  local n = pcall('ZREMRANGEBYSCORE', k, '-inf', cutoff)
  if type(n) == 'table' then
    skipped = skipped + 1
  else
    removed = removed + n
    local ttl = call('PTTL', k)
    if ttl == -2 then
      if n > 0 then deleted = deleted + 1 end
    elseif ttl == -1 then
      call('PEXPIRE', k, ttlms)
      fixed = fixed + 1
    end
    if measure then
      local after = 0
      if ttl ~= -2 then after = call('MEMORY', 'USAGE', k) or 0 end
      bytes = bytes + before - after
      measured = measured + 1
    end
  end
end
return {removed, deleted, fixed, bytes, measured, skipped}`)

// PruneRateLimits trims every sliding-window set of the configured layout
// (or args.Pattern): SCAN ... TYPE zset in batches, then one Lua script per
// batch (per hash slot on a cluster) that removes entries older than the
// server's TIME minus the window, lets emptied sets go and restores a
// missing TTL. Running it twice changes nothing the second time, so a
// retried job is harmless. On error the report holds what was done so far.
func PruneRateLimits(ctx context.Context, rdb redis.UniversalClient, cfg config.RateLimitsConfig, args tasks.RateLimitPruneArgs) (RateLimitPruneReport, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return RateLimitPruneReport{}, err
	}
	if err := args.Validate(); err != nil {
		return RateLimitPruneReport{}, err
	}
	tmpl, err := keys.ParseSingle("rate_limits.key", cfg.Key)
	if err != nil {
		return RateLimitPruneReport{}, err
	}
	rep := RateLimitPruneReport{Pattern: tmpl.Pattern(), Window: cfg.Window.String()}
	if args.Pattern != "" {
		rep.Pattern = args.Pattern
	}
	window := cfg.Window
	if args.Window > 0 {
		window = time.Duration(args.Window)
	}
	rep.Window = window.String()
	if window < time.Millisecond {
		return rep, fmt.Errorf("%s: field \"window\" must be at least 1ms, got %s", tasks.KindRateLimitPrune, window)
	}
	maxRate := cfg.MaxKeysPerSecond
	if args.MaxKeysPerSecond > 0 {
		maxRate = args.MaxKeysPerSecond
	}
	unitUS := int64(1e6)
	if cfg.ScoreUnit == "ms" {
		unitUS = 1e3
	}
	sample := cfg.MemorySample
	if sample > 0 && !memoryUsageSupported(ctx, rdb) {
		sample = 0
	}
	ttlMS := max(window.Milliseconds(), 1)

	var mu sync.Mutex // batches of different cluster masters may run at once
	var offset int64
	_, err = scan.Each(ctx, rdb, scan.Options{Match: rep.Pattern, Type: "zset", BatchSize: cfg.BatchSize, MaxKeysPerSecond: maxRate},
		func(ctx context.Context, batch []string) error {
			mu.Lock()
			off := offset
			offset += int64(len(batch))
			mu.Unlock()
			res, err := runPerSlot(ctx, rdb, pruneScript, batch, window.Microseconds(), unitUS, ttlMS, sample, off)
			if err != nil {
				return fmt.Errorf("prune batch: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Scanned += int64(len(batch))
			rep.EntriesRemoved += res[0]
			rep.KeysDeleted += res[1]
			rep.TTLFixed += res[2]
			rep.BytesMeasured += res[3]
			rep.BytesMeasuredKeys += res[4]
			rep.Skipped += res[5]
			return nil
		})
	rep.DurationMS = time.Since(start).Milliseconds()
	if sample > 0 {
		est := rep.BytesMeasured
		if rep.BytesMeasuredKeys > 0 && rep.BytesMeasuredKeys < rep.Scanned-rep.Skipped {
			est = int64(float64(rep.BytesMeasured) * float64(rep.Scanned-rep.Skipped) / float64(rep.BytesMeasuredKeys))
		}
		rep.BytesReclaimed = &est
	}
	if err != nil {
		return rep, fmt.Errorf("ratelimit prune %q: %w", rep.Pattern, err)
	}
	return rep, nil
}

// runPerSlot runs script over keys, one call per hash slot group (one call in
// all off a cluster), pipelined, and returns the element-wise sum of the
// integer arrays the calls return.
func runPerSlot(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, keys []string, args ...any) ([]int64, error) {
	groups := scan.SplitBySlot(rdb, keys)
	calls := make([]scriptCall, len(groups))
	for i, g := range groups {
		calls[i] = scriptCall{script: script, keys: g, args: args}
	}
	cmds, err := evalAll(ctx, rdb, calls)
	if err != nil {
		return nil, err
	}
	var sum []int64
	for _, c := range cmds {
		v, err := c.Int64Slice()
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = make([]int64, len(v))
		}
		for i := 0; i < len(v) && i < len(sum); i++ {
			sum[i] += v[i]
		}
	}
	return sum, nil
}

// scriptCall is one EVALSHA of a pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// evalAll runs calls in one pipeline (each call's keys in one hash slot) and
// returns their commands, in order; an error of a single call is left in its
// command. Calls answered NOSCRIPT (script cache flushed, failover) did not
// run: their scripts are loaded and only those calls run again.
func evalAll(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	todo := make([]int, len(calls))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := rdb.Pipeline()
		for _, i := range todo {
			cmds[i] = calls[i].script.EvalSha(ctx, pipe, calls[i].keys, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx)
		var again []int
		loaded := map[*redis.Script]bool{}
		for _, i := range todo {
			err := cmds[i].Err()
			switch {
			case err == nil || errors.Is(err, redis.Nil):
			case isNoScript(err) && attempt == 0:
				if s := calls[i].script; !loaded[s] {
					if err := s.Load(ctx, rdb).Err(); err != nil {
						return nil, fmt.Errorf("load script: %w", err)
					}
					loaded[s] = true
				}
				again = append(again, i)
			case !isServerError(err):
				return nil, err // no reply at all: connection or context
			}
			// Any other server error stays with its command.
		}
		todo = again
	}
	return cmds, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// isServerError reports an error reply from Redis, as opposed to no reply.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// memoryUsageSupported reports whether the server answers MEMORY USAGE
// (real Redis does; miniredis does not).
func memoryUsageSupported(ctx context.Context, rdb redis.UniversalClient) bool {
	err := rdb.MemoryUsage(ctx, "cachekeeper:probe:memory-usage").Err()
	return err == nil || errors.Is(err, redis.Nil)
}

// rateLimitJobs holds what the ratelimit:prune handler needs.
type rateLimitJobs struct {
	rdb    redis.UniversalClient
	cfg    config.RateLimitsConfig
	logger *slog.Logger
	pace   config.PaceConfig
}

// registerRateLimits registers ratelimit:prune.
func (w *Worker) registerRateLimits() error {
	if err := w.cfg.RateLimits.Validate(); err != nil {
		return err
	}
	j := &rateLimitJobs{rdb: w.deps.Redis, cfg: w.cfg.RateLimits, logger: w.logger, pace: w.cfg.Pace}
	Handle(w.mux, j.handlePrune)
	w.kinds = append(w.kinds, tasks.KindRateLimitPrune)
	return nil
}

func (j *rateLimitJobs) handlePrune(ctx context.Context, job *Job[tasks.RateLimitPruneArgs]) error {
	ctx, pacer := paced(ctx, j.rdb, j.pace)
	defer pacer.Stop()
	rep, err := PruneRateLimits(ctx, j.rdb, j.cfg, *job.Args)
	attrs := []slog.Attr{slog.String("pattern", rep.Pattern), slog.String("window", rep.Window),
		slog.Int64("scanned", rep.Scanned), slog.Int64("entries_removed", rep.EntriesRemoved),
		slog.Int64("keys_deleted", rep.KeysDeleted), slog.Int64("ttl_fixed", rep.TTLFixed),
		slog.Int64("skipped", rep.Skipped), slog.Int64("duration_ms", rep.DurationMS)}
	if rep.BytesReclaimed != nil {
		attrs = append(attrs, slog.Int64("bytes_reclaimed", *rep.BytesReclaimed), slog.Int64("bytes_measured", rep.BytesMeasured),
			slog.Int64("bytes_measured_keys", rep.BytesMeasuredKeys))
	}
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "rate-limit prune stopped", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
	j.logger.LogAttrs(ctx, slog.LevelInfo, "rate-limit prune done", attrs...)
	writeResult(ctx, j.logger, job.Task.ResultWriter(), withPace(rep, pacer))
	return nil
}

// writeResult stores v as the job's JSON result. A task not run by an asynq
// server (w is nil) has nowhere to store it. The work is done by then, so a
// failure is logged, not returned: a retry would only redo it.
func writeResult(ctx context.Context, logger *slog.Logger, w *asynq.ResultWriter, v any) {
	if w == nil {
		return
	}
	data, err := json.Marshal(v)
	if err == nil {
		_, err = w.Write(data)
	}
	if err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "cannot store job result", slog.String("task_id", w.TaskID()), slog.String("error", err.Error()))
	}
}
