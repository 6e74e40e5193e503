// Package inbox lets producers in any language enqueue jobs with the Redis
// client they already have: they LPUSH a JSON Entry onto a list, and the
// Bridge, running inside the worker, moves each entry into asynq.
//
// No entry is lost by a crash: the bridge moves an entry atomically from
// the inbox to a processing list (BLMOVE RIGHT LEFT), gives it an id there
// (one Lua script replaces the raw entry by an envelope holding the id),
// enqueues it with asynq task id "inbox:<id>", and only then removes the
// envelope. Entries left in the processing list by a crashed bridge are
// recovered when a bridge starts, and by running bridges once they are
// older than RecoverAfter. Because the task id is fixed before the enqueue,
// re-enqueueing a recovered envelope is refused by asynq as a duplicate
// while the first task is still known to it (pending, scheduled, active,
// retrying, or retained after completion): a crash between enqueue and
// removal does not double the job in that window. Past it (the job already
// finished and was deleted before recovery ran) the job runs again: the
// guarantee is at-least-once, and every handler is idempotent. Identical
// entries pushed twice get distinct ids and both run, unless the producer
// gave options.task_id, which makes the second a duplicate on purpose.
//
// Entries move in batches: one script call moves up to BatchSize entries
// from the inbox to the processing list, each already wrapped in its
// envelope (so a batch costs one round trip, not two per entry); Enqueuers
// goroutines enqueue them concurrently, and the handled envelopes leave the
// processing list in one pipelined round trip, each only after its own job
// was enqueued. Only when the inbox is empty does the bridge block, on
// BLMOVE of a single entry. Order is therefore not kept: entries of one
// producer may be enqueued in any order (they were never run in order
// anyway, with several workers and retries).
//
// An entry that does not parse or validate goes to the dead-letter list,
// as {"entry": <the raw entry, as a string>, "error": <why>, "time":
// <RFC 3339>}; it is never silently dropped.
package inbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// Defaults used when a Config field is zero.
const (
	DefaultBlockTimeout = time.Second
	DefaultRecoverAfter = time.Minute
	DefaultBatchSize    = 100
	DefaultEnqueuers    = 8
	// maxRecoverBatch bounds one recovery pass over the processing list.
	maxRecoverBatch = 10000
)

// Outcomes reported to Config.OnOutcome.
const (
	OutcomeEnqueued     = "enqueued"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeRecovered    = "recovered"
	// OutcomeCoalesced: a warm added to its cache's pending ids.
	OutcomeCoalesced = "coalesced"
)

// Enqueuer is what the bridge needs of *tasks.Client.
type Enqueuer interface {
	Enqueue(ctx context.Context, p tasks.Payload, opts ...tasks.Option) (*asynq.TaskInfo, error)
	WarmCache(ctx context.Context, cache string, ids ...any) error
}

// Config configures a Bridge.
type Config struct {
	// Redis runs the bridge's commands (required).
	Redis redis.UniversalClient
	// NewBlocking, when set, opens the client that runs the blocking
	// BLMOVE; Run closes it when ctx ends, which ends a wait at once. When
	// nil, Redis runs BLMOVE too and stopping waits for up to BlockTimeout.
	NewBlocking func() (redis.UniversalClient, error)
	// Enqueuer enqueues the jobs (required), normally a *tasks.Client.
	Enqueuer Enqueuer
	// Key is the inbox list (default keys.Default().Inbox()).
	Key string
	// BlockTimeout is how long one BLMOVE waits (default DefaultBlockTimeout).
	BlockTimeout time.Duration
	// RecoverAfter is how long an entry may sit in the processing list
	// before a running bridge recovers it (default DefaultRecoverAfter).
	RecoverAfter time.Duration
	// BatchSize is the most entries moved per round trip (default
	// DefaultBatchSize).
	BatchSize int
	// Enqueuers is how many entries of a batch are enqueued at once
	// (default DefaultEnqueuers). The Enqueuer must be safe for concurrent
	// use (tasks.Client is).
	Enqueuers int
	// Queues, when not empty, are the queues options.queue may name.
	Queues []string
	// Logger (default: discard).
	Logger *slog.Logger
	// OnOutcome, when set, is called once per entry handled with one of the
	// Outcome constants (for metrics), plus OutcomeRecovered for each entry
	// taken from the processing list by a recovery pass.
	OnOutcome func(outcome string)

	// DeadMax caps the dead-letter list, trimmed on each write to its
	// newest DeadMax entries (0: no cap).
	DeadMax int

	// hooks for crash tests: called before the enqueue and before the
	// final removal of an entry.
	beforeEnqueue, beforeRemove func()
}

// Bridge moves inbox entries into asynq. Run it with the worker.
type Bridge struct {
	cfg        Config
	processing string
	dead       string
	// rawSeen holds raw entries a periodic recovery found in the processing
	// list; still there at the next pass, they are recovered.
	rawSeen map[string]int
}

// New checks cfg and returns a bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.Redis == nil {
		return nil, errors.New("inbox: Config.Redis is required")
	}
	if cfg.Enqueuer == nil {
		return nil, errors.New("inbox: Config.Enqueuer is required")
	}
	if cfg.Key == "" {
		cfg.Key = keys.Default().Inbox()
	}
	if cfg.BlockTimeout == 0 {
		cfg.BlockTimeout = DefaultBlockTimeout
	}
	if cfg.BlockTimeout < 10*time.Millisecond {
		return nil, fmt.Errorf("inbox: BlockTimeout %s is below 10ms", cfg.BlockTimeout)
	}
	if cfg.RecoverAfter == 0 {
		cfg.RecoverAfter = DefaultRecoverAfter
	}
	if cfg.RecoverAfter < time.Second {
		return nil, fmt.Errorf("inbox: RecoverAfter %s is below 1s", cfg.RecoverAfter)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > 10000 {
		return nil, fmt.Errorf("inbox: BatchSize %d must be between 1 and 10000", cfg.BatchSize)
	}
	if cfg.Enqueuers == 0 {
		cfg.Enqueuers = DefaultEnqueuers
	}
	if cfg.Enqueuers < 1 || cfg.Enqueuers > 1000 {
		return nil, fmt.Errorf("inbox: Enqueuers %d must be between 1 and 1000", cfg.Enqueuers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnOutcome == nil {
		cfg.OnOutcome = func(string) {}
	}
	return &Bridge{cfg: cfg, processing: keys.Processing(cfg.Key), dead: keys.DeadLetter(cfg.Key)}, nil
}

// Run recovers what the processing list holds, then moves entries until ctx
// ends; it returns nil then. Redis failures are logged and retried with
// backoff; they do not stop the bridge.
func (b *Bridge) Run(ctx context.Context) error {
	blocking := b.cfg.Redis
	if b.cfg.NewBlocking != nil {
		c, err := b.cfg.NewBlocking()
		if err != nil {
			return fmt.Errorf("inbox: open blocking client: %w", err)
		}
		stop := make(chan struct{})
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			select {
			case <-ctx.Done():
			case <-stop:
			}
			_ = c.Close()
		}()
		defer func() { close(stop); <-closed }()
		blocking = c
	}
	b.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "inbox bridge started", slog.String("inbox", b.cfg.Key),
		slog.String("processing", b.processing), slog.String("dead_letter", b.dead))
	// The stages overlap: this goroutine takes batches while Enqueuers
	// goroutines enqueue the previous ones and one goroutine removes the
	// handled envelopes, many per round trip.
	work := make(chan item, b.cfg.BatchSize)
	acks := make(chan handled, b.cfg.BatchSize+b.cfg.Enqueuers)
	var enqueuers sync.WaitGroup
	for range b.cfg.Enqueuers {
		enqueuers.Add(1)
		go func() {
			defer enqueuers.Done()
			b.enqueueLoop(ctx, work, acks)
		}()
	}
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		b.ackLoop(ctx, acks)
	}()
	defer func() {
		close(work)
		enqueuers.Wait()
		close(acks)
		<-ackDone
	}()
	var lastRecovery time.Time
	backoff := newBackoff()
	for ctx.Err() == nil {
		// At start everything left in the processing list is a crashed
		// bridge's; later only what has sat there for RecoverAfter.
		if time.Since(lastRecovery) >= b.cfg.RecoverAfter/2 {
			olderThan := b.cfg.RecoverAfter
			if lastRecovery.IsZero() {
				olderThan = 0
			}
			if err := b.recover(ctx, olderThan); err != nil {
				b.retryLater(ctx, backoff, "recover the processing list", err)
				continue
			}
			lastRecovery = time.Now()
		}
		batch, err := b.take(ctx)
		if err != nil {
			b.retryLater(ctx, backoff, "move inbox entries", err)
			continue
		}
		if len(batch) > 0 {
			backoff.reset()
			for _, it := range batch {
				select {
				case work <- it:
				case <-ctx.Done():
					return nil // the rest stays in the processing list for recovery
				}
			}
			continue
		}
		entry, err := blocking.BLMove(ctx, b.cfg.Key, b.processing, "RIGHT", "LEFT", b.cfg.BlockTimeout).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			b.retryLater(ctx, backoff, "wait for an inbox entry", err)
			continue
		}
		backoff.reset()
		b.handleUntilDone(ctx, entry)
	}
	return nil
}

// item is one element of the processing list this bridge took: the element
// as stored (s) and its envelope (env.Entry is the raw entry).
type item struct {
	s   string
	env envelope
}

// handled is an element whose job is enqueued (or coalesced, or refused as
// a duplicate), to remove from the processing list and count.
type handled struct{ s, outcome string }

// take moves up to BatchSize entries from the inbox to the processing list,
// each wrapped in its envelope, in one script call, and returns them (none
// when the inbox is empty).
func (b *Bridge) take(ctx context.Context) ([]item, error) {
	now := time.Now().UTC()
	ids := make([]string, b.cfg.BatchSize)
	args := make([]any, 0, b.cfg.BatchSize+1)
	args = append(args, now.Format(time.RFC3339Nano))
	for k := range ids {
		ids[k] = newID()
		args = append(args, ids[k])
	}
	res, err := redisx.InboxTake.Run(ctx, b.cfg.Redis, []string{b.cfg.Key, b.processing}, args...).StringSlice()
	if err != nil {
		return nil, err
	}
	items := make([]item, 0, len(res)/2)
	for k := 0; k+1 < len(res); k += 2 {
		items = append(items, item{s: res[k], env: envelope{ID: ids[k/2], MovedAt: now, Entry: res[k+1]}})
	}
	return items, nil
}

// enqueueLoop enqueues the items of work until work is closed, each retried
// on Redis failures until it succeeds or ctx ends, and passes the handled
// ones to acks. Once ctx has ended it only drains work: what it holds stays
// in the processing list for recovery.
func (b *Bridge) enqueueLoop(ctx context.Context, work <-chan item, acks chan<- handled) {
	for it := range work {
		backoff := newBackoff()
		for ctx.Err() == nil {
			outcome, err := b.process(ctx, it.s, it.env, true)
			if err == nil {
				if outcome != outcomeDone {
					acks <- handled{s: it.s, outcome: outcome}
				}
				break
			}
			b.retryLater(ctx, backoff, "move an inbox entry into the queue", err)
		}
	}
}

// ackLoop removes handled elements from the processing list until acks is
// closed: whatever has arrived while the previous removal ran goes in one
// script call (up to BatchSize), so removal keeps pace with any number of
// enqueuers. A failed removal is retried until ctx ends; the elements then
// stay in the processing list, and recovery finds their jobs already
// enqueued (duplicates).
func (b *Bridge) ackLoop(ctx context.Context, acks <-chan handled) {
	batch := make([]handled, 0, b.cfg.BatchSize)
	for h := range acks {
		batch = append(batch[:0], h)
	more:
		for len(batch) < b.cfg.BatchSize {
			select {
			case h, ok := <-acks:
				if !ok {
					break more
				}
				batch = append(batch, h)
			default:
				break more
			}
		}
		backoff := newBackoff()
		for ctx.Err() == nil {
			err := b.finishAll(ctx, batch)
			if err == nil {
				break
			}
			b.retryLater(ctx, backoff, "remove handled entries from the processing list", err)
		}
	}
}

// finishAll removes handled elements from the processing list in one
// script call and counts their outcomes.
func (b *Bridge) finishAll(ctx context.Context, batch []handled) error {
	if b.cfg.beforeRemove != nil {
		b.cfg.beforeRemove()
	}
	args := make([]any, len(batch))
	for k, h := range batch {
		args[k] = h.s
	}
	if err := redisx.InboxAck.Run(ctx, b.cfg.Redis, []string{b.processing}, args...).Err(); err != nil {
		return fmt.Errorf("inbox: remove %d handled entries from %s: %w", len(batch), b.processing, err)
	}
	for _, h := range batch {
		b.cfg.OnOutcome(h.outcome)
	}
	return nil
}

// outcomeDone marks an element that needs no removal (dead-lettered, taken
// by another bridge, or already removed).
const outcomeDone = "-"

// handleUntilDone handles one processing-list element, retrying a Redis
// failure with backoff until it succeeds or ctx ends (the element then
// stays in the processing list for recovery).
func (b *Bridge) handleUntilDone(ctx context.Context, s string) {
	backoff := newBackoff()
	for {
		err := b.handle(ctx, s)
		if err == nil || ctx.Err() != nil {
			return
		}
		b.retryLater(ctx, backoff, "move an inbox entry into the queue", err)
	}
}

func (b *Bridge) retryLater(ctx context.Context, bo *backoff, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	d := bo.next()
	b.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "inbox: cannot "+what+"; retrying",
		slog.String("inbox", b.cfg.Key), slog.Duration("in", d), slog.String("error", err.Error()))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// handle takes one element of the processing list (a raw entry or an
// envelope) through to asynq and removes it. It returns an error only when
// Redis or the enqueue failed and the element is still in the processing
// list.
func (b *Bridge) handle(ctx context.Context, s string) error {
	env, isEnvelope := parseEnvelope(s)
	if !isEnvelope {
		env = envelope{ID: newID(), MovedAt: time.Now().UTC(), Entry: s}
		if _, err := Parse([]byte(env.Entry), b.cfg.Queues); err == nil {
			wrapped := env.encode()
			ok, err := redisx.ListMove.Run(ctx, b.cfg.Redis, []string{b.processing, b.processing}, s, wrapped, 0).Bool()
			if err != nil {
				return fmt.Errorf("inbox: give the entry an id: %w", err)
			}
			if !ok {
				return nil // another bridge's recovery took it
			}
			s = wrapped
			isEnvelope = true
		}
	}
	outcome, err := b.process(ctx, s, env, isEnvelope)
	if err != nil || outcome == outcomeDone {
		return err
	}
	return b.finish(ctx, s, outcome)
}

// process enqueues (or coalesces, or dead-letters) one element of the
// processing list (s), an envelope (env, isEnvelope) or an invalid raw entry
// (env.Entry = s), and returns the outcome to count when it is removed
// (outcomeDone when it needs no removal). It returns an error only when
// Redis or the enqueue failed.
func (b *Bridge) process(ctx context.Context, s string, env envelope, isEnvelope bool) (string, error) {
	job, err := Parse([]byte(env.Entry), b.cfg.Queues)
	if err != nil {
		return outcomeDone, b.deadLetter(ctx, s, env.Entry, err)
	}
	if !isEnvelope { // a valid raw entry: handle wraps it first
		return "", fmt.Errorf("inbox: internal error: unwrapped entry in a batch")
	}
	if b.cfg.beforeEnqueue != nil {
		b.cfg.beforeEnqueue()
	}
	if job.Coalesce {
		return b.coalesce(ctx, s, env.Entry, job.Payload.(*tasks.WarmArgs))
	}
	taskID := job.TaskID
	opts := job.Options
	if taskID == "" {
		taskID = "inbox:" + env.ID
		opts = append(opts, tasks.TaskID(taskID))
	}
	outcome := OutcomeEnqueued
	info, err := b.cfg.Enqueuer.Enqueue(ctx, job.Payload, opts...)
	switch {
	case errors.Is(err, tasks.ErrDuplicateTask):
		outcome = OutcomeDuplicate
	case errors.Is(err, tasks.ErrInvalidPayload):
		return outcomeDone, b.deadLetter(ctx, s, env.Entry, err)
	case err != nil:
		return "", err
	}
	attrs := []slog.Attr{slog.String("kind", job.Payload.Kind()), slog.String("task_id", taskID), slog.String("outcome", outcome)}
	if info != nil {
		attrs = append(attrs, slog.String("queue", info.Queue))
	}
	b.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "inbox entry enqueued", attrs...)
	return outcome, nil
}

// coalesce adds the ids of a warm entry to its cache's pending ids; the
// caller then removes the entry (s) from the processing list. Adding is
// idempotent, so a crash in between only adds the ids again on recovery.
func (b *Bridge) coalesce(ctx context.Context, s, raw string, w *tasks.WarmArgs) (string, error) {
	ids := make([]any, len(w.IDs))
	for i, id := range w.IDs {
		ids[i] = id
	}
	err := b.cfg.Enqueuer.WarmCache(ctx, w.Cache, ids...)
	if errors.Is(err, tasks.ErrInvalidPayload) {
		return outcomeDone, b.deadLetter(ctx, s, raw, err)
	}
	if err != nil {
		return "", err
	}
	b.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "inbox warm coalesced", slog.String("cache", w.Cache), slog.Int("ids", len(w.IDs)))
	return OutcomeCoalesced, nil
}

// finish removes a handled element (s) from the processing list and counts
// its outcome.
func (b *Bridge) finish(ctx context.Context, s, outcome string) error {
	if b.cfg.beforeRemove != nil {
		b.cfg.beforeRemove()
	}
	if err := b.cfg.Redis.LRem(ctx, b.processing, 1, s).Err(); err != nil {
		return fmt.Errorf("inbox: remove the %s entry from %s: %w", outcome, b.processing, err)
	}
	b.cfg.OnOutcome(outcome)
	return nil
}

// deadLetter moves s from the processing list to the dead-letter list with
// the reason, atomically.
func (b *Bridge) deadLetter(ctx context.Context, s, raw string, reason error) error {
	rec, err := json.Marshal(DeadLetter{Entry: raw, Error: reason.Error(), Time: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("inbox: encode dead letter: %w", err)
	}
	moved, err := redisx.ListMove.Run(ctx, b.cfg.Redis, []string{b.processing, b.dead}, s, rec, b.cfg.DeadMax).Bool()
	if err != nil {
		return fmt.Errorf("inbox: dead-letter an invalid entry: %w", err)
	}
	if moved {
		b.cfg.OnOutcome(OutcomeDeadLettered)
		b.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "inbox entry rejected; moved to the dead-letter list",
			slog.String("dead_letter", b.dead), slog.String("error", reason.Error()))
	}
	return nil
}

// recover handles the elements of the processing list, oldest first: all of
// them when olderThan is 0, else envelopes moved longer than olderThan ago
// and raw entries already seen by the previous pass.
func (b *Bridge) recover(ctx context.Context, olderThan time.Duration) error {
	items, err := b.cfg.Redis.LRange(ctx, b.processing, -maxRecoverBatch, -1).Result()
	if err != nil {
		return fmt.Errorf("inbox: read %s: %w", b.processing, err)
	}
	seen := map[string]int{}
	for i := len(items) - 1; i >= 0; i-- {
		s := items[i]
		if olderThan > 0 {
			if env, ok := parseEnvelope(s); ok {
				if time.Since(env.MovedAt) < olderThan {
					continue
				}
			} else if b.rawSeen[s] == 0 {
				seen[s]++ // a bridge may be about to wrap it: next pass
				continue
			} else {
				b.rawSeen[s]--
			}
		}
		b.cfg.OnOutcome(OutcomeRecovered)
		b.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "inbox: recovering an entry left in the processing list",
			slog.String("processing", b.processing))
		if err := b.handle(ctx, s); err != nil {
			return err
		}
	}
	b.rawSeen = seen
	return nil
}

// DeadLetter is one element of the dead-letter list.
type DeadLetter struct {
	// Entry is the rejected entry exactly as it was pushed.
	Entry string `json:"entry"`
	// Error says why it was rejected.
	Error string    `json:"error"`
	Time  time.Time `json:"time"`
}

// envelope is a processing-list element that has its id.
type envelope struct {
	ID      string    `json:"cachekeeper_inbox_id"`
	MovedAt time.Time `json:"moved_at"`
	Entry   string    `json:"entry"`
}

func (e envelope) encode() string {
	data, _ := json.Marshal(e) // strings and a time: cannot fail
	return string(data)
}

// parseEnvelope recognises an envelope; a producer's entry never is one
// (entries reject unknown fields such as cachekeeper_inbox_id).
func parseEnvelope(s string) (envelope, bool) {
	if len(s) == 0 || s[0] != '{' {
		return envelope{}, false
	}
	var e envelope
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.ID == "" {
		return envelope{}, false
	}
	return e, true
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// backoff doubles from 50ms to 5s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = 50 * time.Millisecond
	} else {
		b.d = min(2*b.d, 5*time.Second)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }
