package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// baselineLanes is the number of bare asynq servers (one queue each) probed
// in parallel for the baseline's pickup latency: each pickup takes about a
// second, so one server alone would need minutes for a few dozen samples.
const baselineLanes = 10

// settle is how long a freshly started side is left alone before anything
// is measured, so that every server has started and gone idle.
const settle = 1500 * time.Millisecond

// PickupLatency runs the pickup_latency scenario: single no-op tasks sent one
// at a time to the critical queue of an idle cachekeeper worker, timed from
// the enqueue call to the handler's start, then the same for bare asynq
// servers with default settings; and the Redis commands per second each
// costs while idle.
//
// CachekeeperPerS and BaselinePerS are 1000/p50 (pickups per second at the
// median latency), so Ratio is how many times sooner cachekeeper picks a job
// up at the median; the percentiles themselves are in Extra.
func PickupLatency(ctx context.Context, o QueueOptions) (Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	env, err := newQueueEnv(ctx, o)
	if err != nil {
		return Result{}, err
	}
	defer env.close()

	ours, oursIdle, err := env.oursPickup(ctx)
	if err != nil {
		return Result{}, err
	}
	o.Logger.Info("bench pickup_latency: cachekeeper measured", slog.Float64("p50_ms", percentile(ours, 50)),
		slog.Float64("p99_ms", percentile(ours, 99)), slog.Float64("idle_redis_cmds_per_s", roundTo(oursIdle.perS, 1)))
	base, baseIdle, err := env.baselinePickup(ctx)
	if err != nil {
		return Result{}, err
	}
	p50, baseP50 := percentile(ours, 50), percentile(base, 50)
	r := NewResult("pickup_latency", "asynq v0.26 default settings (polls an empty queue about once a second)", 1000/p50, 1000/baseP50)
	measured := "private redis-server"
	if !o.Private {
		measured = "shared server: includes other clients' commands"
	}
	r.Extra = map[string]any{
		"p50_ms":                         roundTo(p50, 2),
		"p99_ms":                         roundTo(percentile(ours, 99), 2),
		"max_ms":                         roundTo(slices.Max(ours), 2),
		"samples":                        len(ours),
		"baseline_p50_ms":                roundTo(baseP50, 1),
		"baseline_p99_ms":                roundTo(percentile(base, 99), 1),
		"baseline_samples":               len(base),
		"idle_redis_cmds_per_s":          roundTo(oursIdle.perS, 1),
		"idle_redis_top":                 oursIdle.top(4),
		"baseline_idle_redis_cmds_per_s": roundTo(baseIdle.perS, 1),
		"idle_measured_on":               measured,
		"servers":                        o.Servers,
	}
	return r, nil
}

// oursPickup measures an idle cachekeeper worker: idle Redis commands first,
// then Samples single tasks on its critical queue.
func (e *queueEnv) oursPickup(ctx context.Context) ([]float64, idleCost, error) {
	prefix := e.layout()
	cfg := e.o.workerConfig(prefix)
	for q := range cfg.Worker.Queues {
		e.queues = append(e.queues, q)
	}
	queue := prefix + "critical"
	starts := make(chan time.Time, 1)
	h := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		starts <- time.Now()
		return nil
	})
	stop, err := startWorker(ctx, cfg, e.rdb, e.o.WorkerLogger, h)
	if err != nil {
		return nil, idleCost{}, err
	}
	defer func() { _ = stop() }()
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, idleCost{}, err
	}
	idle, err := measureIdle(ctx, e.rdb, e.o.IdleWindow)
	if err != nil {
		return nil, idleCost{}, err
	}
	ds, err := e.probe(ctx, queue, e.o.Samples, starts)
	if err != nil {
		return nil, idleCost{}, err
	}
	return ds, idle, stop()
}

// baselinePickup measures bare asynq servers with default settings: idle
// commands with one server, then BaselineSamples pickups over baselineLanes
// servers probed in parallel, one queue each.
func (e *queueEnv) baselinePickup(ctx context.Context) ([]float64, idleCost, error) {
	prefix := e.layout()
	lanes := min(baselineLanes, e.o.BaselineSamples)
	starts := map[string]chan time.Time{}
	var queues []string
	for i := 0; i < lanes; i++ {
		q := prefix + "raw" + strconv.Itoa(i)
		queues = append(queues, q)
		starts[q] = make(chan time.Time, 1)
		e.queues = append(e.queues, q)
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(NoopKind, func(ctx context.Context, _ *asynq.Task) error {
		q, _ := asynq.GetQueueName(ctx)
		if ch, ok := starts[q]; ok {
			ch <- time.Now()
		}
		return nil
	})
	var servers []*asynq.Server
	defer func() {
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); srv.Shutdown() }()
		}
		wg.Wait()
	}()
	start := func(q string) error {
		srv := asynq.NewServer(e.connOpt, asynq.Config{Concurrency: 1, Queues: map[string]int{q: 1},
			LogLevel: asynq.ErrorLevel, Logger: quietLogger{}})
		if err := srv.Start(mux); err != nil {
			return fmt.Errorf("start baseline asynq server: %w", err)
		}
		servers = append(servers, srv)
		return nil
	}
	if err := start(queues[0]); err != nil {
		return nil, idleCost{}, err
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, idleCost{}, err
	}
	idle, err := measureIdle(ctx, e.rdb, e.o.IdleWindow)
	if err != nil {
		return nil, idleCost{}, err
	}
	for _, q := range queues[1:] {
		if err := start(q); err != nil {
			return nil, idleCost{}, err
		}
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, idleCost{}, err
	}
	var (
		mu       sync.Mutex
		all      []float64
		firstErr error
		wg       sync.WaitGroup
	)
	for i, q := range queues {
		n := e.o.BaselineSamples / lanes
		if i < e.o.BaselineSamples%lanes {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds, err := e.probe(ctx, q, n, starts[q])
			mu.Lock()
			defer mu.Unlock()
			all = append(all, ds...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return all, idle, firstErr
}

// probe sends n single tasks to an idle queue, one at a time with a pause
// of 20 to 80 ms before each, and returns the enqueue-to-start times in ms.
func (e *queueEnv) probe(ctx context.Context, queue string, n int, starts <-chan time.Time) ([]float64, error) {
	ds := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if err := sleepCtx(ctx, time.Duration(20+i%7*10)*time.Millisecond); err != nil {
			return ds, err
		}
		t0 := time.Now()
		if _, err := e.client.EnqueueContext(ctx, asynq.NewTask(NoopKind, nil), asynq.Queue(queue)); err != nil {
			return ds, fmt.Errorf("enqueue to %s: %w", queue, err)
		}
		select {
		case t := <-starts:
			ds = append(ds, float64(t.Sub(t0).Microseconds())/1000)
		case <-time.After(30 * time.Second):
			return ds, fmt.Errorf("a task on %s was not picked up within 30s", queue)
		case <-ctx.Done():
			return ds, ctx.Err()
		}
	}
	return ds, nil
}

// idleCost is the command rate of an idle server, from INFO commandstats.
type idleCost struct {
	perS  float64
	byCmd map[string]float64
}

// top renders the n most frequent commands, such as "evalsha 12.0/s, ...".
func (c idleCost) top(n int) string {
	names := make([]string, 0, len(c.byCmd))
	for k := range c.byCmd {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if c.byCmd[names[i]] != c.byCmd[names[j]] {
			return c.byCmd[names[i]] > c.byCmd[names[j]]
		}
		return names[i] < names[j]
	})
	var parts []string
	for _, k := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1f/s", k, c.byCmd[k]))
	}
	return strings.Join(parts, ", ")
}

// measureIdle counts the commands Redis runs during window (commands run
// inside Lua scripts included, our own INFO excluded).
func measureIdle(ctx context.Context, rdb redis.UniversalClient, window time.Duration) (idleCost, error) {
	before, err := commandStats(ctx, rdb)
	if err != nil {
		return idleCost{}, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, window); err != nil {
		return idleCost{}, err
	}
	after, err := commandStats(ctx, rdb)
	if err != nil {
		return idleCost{}, err
	}
	secs := time.Since(t0).Seconds()
	c := idleCost{byCmd: map[string]float64{}}
	for name, n := range after {
		if d := n - before[name]; d > 0 {
			c.byCmd[name] = float64(d) / secs
			c.perS += float64(d) / secs
		}
	}
	return c, nil
}

// commandStats returns the calls per command, without INFO itself.
func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	text, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") || name == "info" {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats: bad line %q", line)
				}
				out[name] = n
			}
		}
	}
	return out, nil
}

// percentile returns the nearest-rank p-th percentile of ds.
func percentile(ds []float64, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
