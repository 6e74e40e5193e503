package cache

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// hotSetMax is the most ids a cache's hot set keeps (ck1_touch's max_size).
const hotSetMax = 10000

// touchEvery is how often, at most, this process records a hit of one id.
const touchEvery = time.Second

// rememberMax bounds the per-id memory of a cache's touches and refreshes;
// past it the memory is cleared (a few extra samples, never a missed one).
const rememberMax = 10000

// afterHit records hits of keys close to expiry (refresh_ahead caches: within
// twice before_expiry, a sample of them, at most one per key per second) and
// asks for an early refresh (XFetch) of a key near expiry.
func (r *Reader) afterHit(ctx context.Context, c *cacheState, id string, pttl time.Duration) {
	now := time.Now()
	if c.refresh.Enabled && pttl <= 2*c.refresh.BeforeExpiry && rand.Float64() < c.refresh.Sample && c.due(c.touched, id, now, touchEvery) {
		r.count.touches.Add(1)
		if err := r.caller.Call(ctx, redisx.FuncTouch, []string{c.hot}, id, hotSetMax).Err(); err != nil {
			r.logger.Warn("cache: record a hit for refresh-ahead", "cache", c.spec.Name(), "error", err)
		}
	}
	er := r.opts.EarlyRefresh
	if er.Beta <= 0 || pttl <= 0 {
		return
	}
	// XFetch: refresh when delta*beta*-ln(U) >= time left; U in (0, 1].
	u := 1 - rand.Float64()
	if float64(er.Delta)*er.Beta*-math.Log(u) < float64(pttl) {
		return
	}
	if !c.due(c.refreshed, id, now, er.Delta) {
		return
	}
	opts := []tasks.Option{tasks.TaskID("cachekeeper-refresh:" + c.spec.Name() + ":" + id)}
	if er.Queue != "" {
		opts = append(opts, tasks.Queue(er.Queue))
	}
	r.count.early.Add(1)
	_, err := r.opts.Tasks.WarmCacheIDs(ctx, c.spec.Name(), []string{id}, opts...)
	if err != nil && err != tasks.ErrDuplicateTask {
		r.logger.Warn("cache: ask for an early refresh", "cache", c.spec.Name(), "id", id, "error", err)
	}
}

// due reports whether id was not marked in m within every, and marks it.
func (c *cacheState) due(m map[string]time.Time, id string, now time.Time, every time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := m[id]; ok && now.Sub(last) < every {
		return false
	}
	if len(m) >= rememberMax {
		clear(m)
	}
	m[id] = now
	return true
}
