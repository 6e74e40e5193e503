package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Errors callers branch on.
var (
	// ErrUnknownEntry is returned by RunNow for a name not in the schedule.
	ErrUnknownEntry = errors.New("no schedule entry with that name")
	// ErrRunning is returned by Run when the scheduler is already running.
	ErrRunning = errors.New("scheduler is already running")
)

// DefaultEnqueueTimeout bounds one enqueue when Config.EnqueueTimeout is zero.
const DefaultEnqueueTimeout = 10 * time.Second

// Config configures a Scheduler.
type Config struct {
	// Entries is the schedule, usually config.Config.Schedule.
	Entries []EntryConfig
	// KeyPrefix starts the Redis keys the scheduler owns, usually
	// config.Config.KeyPrefix; "" means "cachekeeper:".
	KeyPrefix string
	// Registerer receives the scheduler's metrics; nil registers none.
	Registerer prometheus.Registerer
	// EnqueueTimeout bounds one enqueue (default DefaultEnqueueTimeout). It
	// bites only when the go-redis client has ContextTimeoutEnabled; otherwise
	// the client's own read/write timeouts bound a stuck command.
	EnqueueTimeout time.Duration
}

// Option changes how a Scheduler runs, for tests.
type Option func(*Scheduler)

// WithClock makes the scheduler use c instead of the real clock.
func WithClock(c Clock) Option {
	return func(s *Scheduler) {
		if c != nil {
			s.clock = c
		}
	}
}

// Scheduler enqueues the ticks of its entries. Any number of Schedulers may
// run against one Redis; each tick is enqueued once (see the package doc).
type Scheduler struct {
	rdb            redis.UniversalClient
	client         *asynq.Client
	keys           keys.Keys
	log            *slog.Logger
	clock          Clock
	metrics        *metrics
	enqueueTimeout time.Duration

	running atomic.Bool
	reload  chan struct{}
	// reloads counts accepted Reloads; applied is the count the Run loop had
	// seen when it last started waiting (tests wait for applied == reloads).
	reloads, applied atomic.Uint64

	mu     sync.Mutex
	states []*entryState // in configuration order
}

type entryState struct {
	entry     Entry
	next      time.Time // next tick to enqueue; zero: none
	retryTick time.Time // tick whose enqueue failed; zero: none
	retryAt   time.Time
	failures  int
}

type job struct {
	entry Entry
	tick  time.Time
}

// New validates cfg.Entries and returns a Scheduler that enqueues through
// rdb (asynq shares the connection pool; closing rdb is the caller's job).
func New(cfg Config, rdb redis.UniversalClient, logger *slog.Logger, opts ...Option) (*Scheduler, error) {
	if rdb == nil {
		return nil, errors.New("scheduler: New needs a Redis client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EnqueueTimeout < 0 {
		return nil, fmt.Errorf("scheduler: EnqueueTimeout must not be negative, got %s", cfg.EnqueueTimeout)
	}
	if cfg.EnqueueTimeout == 0 {
		cfg.EnqueueTimeout = DefaultEnqueueTimeout
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s := &Scheduler{
		rdb:            rdb,
		client:         asynq.NewClientFromRedisClient(rdb),
		keys:           k,
		log:            logger.With("component", "scheduler"),
		clock:          RealClock(),
		enqueueTimeout: cfg.EnqueueTimeout,
		reload:         make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	entries, err := parseEntries(cfg.Entries, s.clock)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	for _, e := range entries {
		s.states = append(s.states, &entryState{entry: e, next: e.sched.Next(now)})
		s.metrics.initEntry(e.Name)
	}
	return s, nil
}

// Entries returns the current entries in configuration order.
func (s *Scheduler) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, len(s.states))
	for i, st := range s.states {
		out[i] = st.entry
	}
	return out
}

// Reload replaces the entries. The whole list is validated first: on error
// nothing changes and the running entries keep running. Accepted changes take
// effect at the next tick; an entry whose schedule and time zone are
// unchanged keeps its next tick.
func (s *Scheduler) Reload(entries []EntryConfig) error {
	parsed, err := parseEntries(entries, s.clock)
	if err != nil {
		s.mu.Lock()
		n := len(s.states)
		s.mu.Unlock()
		return fmt.Errorf("scheduler: new schedule refused, the %d running entries stay: %w", n, err)
	}
	now := s.clock.Now()
	s.mu.Lock()
	old := make(map[string]*entryState, len(s.states))
	for _, st := range s.states {
		old[st.entry.Name] = st
	}
	var added, changed, kept int
	states := make([]*entryState, 0, len(parsed))
	for _, e := range parsed {
		s.metrics.initEntry(e.Name)
		st := &entryState{entry: e, next: e.sched.Next(now)}
		prev, ok := old[e.Name]
		switch {
		case !ok:
			added++
		case sameTicks(prev.entry, e):
			st.next = prev.next
			if prev.entry.Series == e.Series {
				st.retryTick, st.retryAt, st.failures = prev.retryTick, prev.retryAt, prev.failures
				kept++
			} else {
				changed++
			}
			delete(old, e.Name)
		default:
			changed++
			delete(old, e.Name)
		}
		states = append(states, st)
	}
	s.states = states
	s.reloads.Add(1)
	s.mu.Unlock()
	s.log.Info("schedule reloaded", slog.Int("entries", len(states)), slog.Int("added", added),
		slog.Int("changed", changed), slog.Int("removed", len(old)), slog.Int("unchanged", kept))
	select {
	case s.reload <- struct{}{}:
	default:
	}
	return nil
}

// RunNow enqueues entry name at once, with an id that never collides with a
// tick's, so it neither blocks nor is blocked by the regular runs.
func (s *Scheduler) RunNow(ctx context.Context, name string) (*asynq.TaskInfo, error) {
	var e Entry
	found := false
	s.mu.Lock()
	for _, st := range s.states {
		if st.entry.Name == name {
			e, found = st.entry, true
			break
		}
	}
	s.mu.Unlock()
	if !found {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEntry, name)
	}
	id, err := e.runNowID()
	if err != nil {
		return nil, err
	}
	task, err := e.newTask(id, e.Retention)
	if err != nil {
		return nil, err
	}
	info, err := s.client.EnqueueContext(ctx, task)
	if err != nil {
		return nil, fmt.Errorf("schedule.%s: enqueue now: %w", name, err)
	}
	s.log.Info("schedule entry enqueued on demand", slog.String("entry", name), slog.String("task_id", info.ID), slog.String("queue", info.Queue))
	return info, nil
}

// Run enqueues ticks until ctx is done, then returns nil. It first runs the
// catch-up of entries that ask for it.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	s.log.Info("scheduler started", slog.Int("entries", len(s.Entries())))
	defer s.log.Info("scheduler stopped")
	s.start(ctx)
	for {
		if ctx.Err() != nil {
			return nil
		}
		gen := s.reloads.Load()
		now := s.clock.Now()
		jobs, wake := s.due(now)
		for _, j := range jobs {
			if ctx.Err() != nil {
				return nil
			}
			s.fire(ctx, j)
		}
		if len(jobs) > 0 {
			continue // time has passed while enqueueing: look again
		}
		var timer Timer
		var fired <-chan time.Time
		if !wake.IsZero() {
			timer = s.clock.NewTimer(wake.Sub(now))
			fired = timer.C()
		}
		s.applied.Store(gen)
		select {
		case <-ctx.Done():
		case <-fired:
		case <-s.reload:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// start sets every entry's next tick from now and enqueues, for entries with
// catch_up: one, the latest tick missed since the last recorded one.
func (s *Scheduler) start(ctx context.Context) {
	now := s.clock.Now()
	var catchUp []Entry
	s.mu.Lock()
	for _, st := range s.states {
		st.next = st.entry.sched.Next(now)
		st.retryTick, st.failures = time.Time{}, 0
		if st.entry.CatchUp == CatchUpOne {
			catchUp = append(catchUp, st.entry)
		}
	}
	s.mu.Unlock()
	if len(catchUp) == 0 {
		return
	}
	names := make([]string, len(catchUp))
	for i, e := range catchUp {
		names[i] = e.Name
	}
	last, err := s.lastTicks(ctx, names)
	if err != nil {
		s.log.Error("catch-up skipped: cannot read the last enqueued ticks", slog.Any("error", err))
		return
	}
	for _, e := range catchUp {
		l, ok := last[e.Name]
		if !ok {
			s.log.Debug("no tick recorded yet; nothing to catch up", slog.String("entry", e.Name))
			continue
		}
		tick := lastTick(e.sched, l, now)
		if tick.IsZero() {
			continue
		}
		s.log.Info("catching up the latest missed tick", slog.String("entry", e.Name),
			slog.Time("last_enqueued", l), slog.Time("tick", tick))
		s.fire(ctx, job{entry: e, tick: tick})
	}
}

// due returns the ticks to enqueue at now, advances each entry past now, and
// returns when to look again (zero: no tick is coming).
func (s *Scheduler) due(now time.Time) ([]job, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var jobs []job
	var wake time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	for _, st := range s.states {
		e := st.entry
		switch {
		case !st.next.IsZero() && !st.next.After(now):
			tick := lastTick(e.sched, st.next.Add(-time.Nanosecond), now)
			if tick.IsZero() {
				tick = st.next
			}
			if missed := countTicks(e.sched, st.next, tick); missed > 0 {
				s.metrics.ticks.WithLabelValues(e.Name, OutcomeMissed).Add(float64(missed))
				s.log.Warn("ticks passed while the scheduler was not running them; enqueueing the latest only",
					slog.String("entry", e.Name), slog.Int("missed", missed), slog.Time("first_missed", st.next), slog.Time("tick", tick))
			}
			if !st.retryTick.IsZero() {
				s.metrics.tick(e.Name, OutcomeMissed)
				s.log.Warn("giving up a tick whose enqueue failed: the next tick is due",
					slog.String("entry", e.Name), slog.Time("tick", st.retryTick))
				st.retryTick = time.Time{}
			}
			jobs = append(jobs, job{entry: e, tick: tick})
			st.next = e.sched.Next(tick)
		case !st.retryTick.IsZero() && !st.retryAt.After(now):
			jobs = append(jobs, job{entry: e, tick: st.retryTick})
			st.retryTick = time.Time{}
		}
		earliest(st.next)
		if !st.retryTick.IsZero() {
			earliest(st.retryAt)
		}
	}
	return jobs, wake
}

// countTicks counts the ticks in [from, to), giving up at a large number.
func countTicks(sched Schedule, from, to time.Time) int {
	n := 0
	for t := from; !t.IsZero() && t.Before(to) && n < 100000; t = sched.Next(t) {
		n++
	}
	return n
}

// fire enqueues one tick and records the outcome.
func (s *Scheduler) fire(ctx context.Context, j job) {
	e := j.entry
	id := e.TaskID(j.tick)
	log := s.log.With(slog.String("entry", e.Name), slog.String("task_id", id), slog.Time("tick", j.tick))
	task, err := e.newTask(id, e.Retention)
	if err != nil {
		s.metrics.tick(e.Name, OutcomeFailed)
		log.Error("cannot build the scheduled task", slog.Any("error", err))
		return
	}
	ectx, cancel := context.WithTimeout(ctx, s.enqueueTimeout)
	_, err = s.client.EnqueueContext(ectx, task)
	cancel()
	switch {
	case err == nil:
		s.metrics.tick(e.Name, OutcomeEnqueued)
		log.Info("scheduled task enqueued", slog.String("kind", e.Kind), slog.String("queue", e.QueueName))
	case errors.Is(err, asynq.ErrTaskIDConflict):
		s.metrics.tick(e.Name, OutcomeDuplicate)
		log.Debug("tick already enqueued by another replica")
	case ctx.Err() != nil:
		return // shutting down
	default:
		s.metrics.tick(e.Name, OutcomeFailed)
		backoff := s.retryLater(j)
		log.Error("enqueue of a scheduled task failed; retrying until the next tick", slog.Any("error", err), slog.Duration("retry_in", backoff))
		return
	}
	s.resetFailures(e)
	if err := s.recordTick(ctx, e.Name, j.tick); err != nil && ctx.Err() == nil {
		log.Warn("cannot record the last enqueued tick (used by catch_up)", slog.Any("error", err))
	}
}

const maxBackoff = 30 * time.Second

func (s *Scheduler) retryLater(j job) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.states {
		if st.entry.Name != j.entry.Name || st.entry.Series != j.entry.Series {
			continue
		}
		st.failures++
		backoff := time.Second << min(st.failures-1, 5)
		backoff = min(backoff, maxBackoff)
		st.retryTick, st.retryAt = j.tick, s.clock.Now().Add(backoff)
		return backoff
	}
	return 0 // the entry was removed or changed meanwhile
}

func (s *Scheduler) resetFailures(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.states {
		if st.entry.Name == e.Name {
			st.failures = 0
		}
	}
}

func (s *Scheduler) recordTick(ctx context.Context, name string, tick time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout)
	defer cancel()
	err := redisx.SchedulerRecordTick.Run(ctx, s.rdb, []string{s.keys.SchedulerLastTick()}, name, tick.Unix()).Err()
	if err != nil {
		return fmt.Errorf("record last tick of %s: %w", name, err)
	}
	return nil
}

// lastTicks reads the recorded last tick of each name; names without a
// record are absent from the map.
func (s *Scheduler) lastTicks(ctx context.Context, names []string) (map[string]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.keys.SchedulerLastTick(), names...).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.keys.SchedulerLastTick(), err)
	}
	out := make(map[string]time.Time, len(names))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s field %s holds %q, not Unix seconds", s.keys.SchedulerLastTick(), names[i], str)
		}
		out[names[i]] = time.Unix(sec, 0)
	}
	return out, nil
}
