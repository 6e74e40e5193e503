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
// Entries move in batches, and the stages overlap. One script call
// (inbox_take.lua) moves up to BatchSize entries from the inbox into the
// processing list as one batch envelope {"cachekeeper_inbox_batch": id,
// "moved_at": ..., "entries": [...]}; entry k of it is enqueued with task id
// "inbox:<id>-<k>", fixed before its enqueue like an envelope's. While
// Enqueuers goroutines enqueue batches, the next batch is taken. With
// Config.Batch (the worker sets a BatchEnqueuer, see batchenqueue.go) the
// entries of a batch that are neither coalesced nor delayed go to Redis in
// one pipeline, each built by asynq's own code; the others go one at a
// time, on Enqueuers goroutines of their own. Once every entry of a batch
// is handled, one goroutine removes its envelope (inbox_ack.lua, several
// batches per round trip). A crash leaves the
// envelope in the processing list: recovery enqueues its entries again
// under the same task ids, so those already enqueued are refused as
// duplicates. An invalid entry of a batch is added to the dead-letter list
// at once; after a crash before its batch left the processing list it is
// added again (a dead letter may appear twice, never be lost). Only when
// the inbox is empty does the bridge block, on BLMOVE of a single entry,
// which it wraps in an envelope of its own. Order is therefore not kept:
// entries of one producer may be enqueued in any order (they were never run
// in order anyway, with several workers and retries). Envelopes of one
// entry and raw entries left by an older bridge are still recovered; a
// bridge older than batch envelopes would dead-letter one left by a newer
// bridge, whole, so all workers are upgraded together.
//
// An entry that does not parse or validate goes to the dead-letter list,
// as {"entry": <the raw entry, as a string>, "error": <why>, "time":
// <RFC 3339>}; it is never silently dropped.
package inbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	// OutcomeCoalesced: a warm or an invalidation added to its cache's
	// pending ids.
	OutcomeCoalesced = "coalesced"
)

// Enqueuer is what the bridge needs of *tasks.Client.
type Enqueuer interface {
	Enqueue(ctx context.Context, p tasks.Payload, opts ...tasks.Option) (*asynq.TaskInfo, error)
	WarmCache(ctx context.Context, cache string, ids ...any) error
	Invalidate(ctx context.Context, cache string, ids ...any) error
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
	// Batch, when set, enqueues the entries of a batch that are neither
	// coalesced nor delayed (process_in, process_at) in one pipeline per
	// batch, normally a *BatchEnqueuer built with Enqueuer's options; the
	// others, and all when Batch is nil, go through Enqueuer one at a time.
	Batch Batcher
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
	// Enqueuers is how many batches are enqueued at once (each in one
	// pipeline with Batch), and how many of the entries that go one at a
	// time (default DefaultEnqueuers). The Enqueuer and Batch must be safe
	// for concurrent use (tasks.Client and BatchEnqueuer are).
	Enqueuers int
	// Queues, when not empty, are the queues options.queue may name.
	Queues []string
	// Kinds, when set, finds the kinds of the application's own that
	// running workers handle; without it only built-in kinds are accepted.
	Kinds KindResolver
	// Logger (default: discard).
	Logger *slog.Logger
	// OnOutcome, when set, is called once per entry handled with one of the
	// Outcome constants (for metrics), plus OutcomeRecovered for each entry
	// taken from the processing list by a recovery pass.
	OnOutcome func(outcome string)

	// DeadMax caps the dead-letter list, trimmed on each write to its
	// newest DeadMax entries (0: no cap).
	DeadMax int
	// MaxEntryBytes refuses (dead-letters, unparsed) larger entries (0: no
	// limit).
	MaxEntryBytes int

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
	// batchOff is set once the batched enqueue gave a job back (asynq did
	// not behave as it relies on): every entry then goes through Enqueuer.
	batchOff atomic.Bool
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
	// goroutines enqueue the previous ones (each a batch at a time, in one
	// pipeline with Config.Batch), Enqueuers more enqueue the entries that
	// go one at a time, and one goroutine removes the handled envelopes,
	// many per round trip.
	work := make(chan *batch, 1)
	single := make(chan item, b.cfg.BatchSize)
	acks := make(chan *batch, 100)
	var batchers, enqueuers sync.WaitGroup
	for range b.cfg.Enqueuers {
		batchers.Add(1)
		go func() {
			defer batchers.Done()
			b.batchLoop(ctx, work, single, acks)
		}()
		enqueuers.Add(1)
		go func() {
			defer enqueuers.Done()
			b.enqueueLoop(ctx, single, acks)
		}()
	}
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		b.ackLoop(ctx, acks)
	}()
	defer func() {
		close(work)
		batchers.Wait()
		close(single)
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
		bt, err := b.take(ctx)
		if err != nil {
			b.retryLater(ctx, backoff, "move inbox entries", err)
			continue
		}
		if bt != nil {
			backoff.reset()
			select {
			case work <- bt:
			case <-ctx.Done():
				return nil // the batch stays in the processing list for recovery
			}
			continue
		}
		entry, err := redisx.BLMove(ctx, blocking, b.cfg.Key, b.processing, "RIGHT", "LEFT", b.cfg.BlockTimeout).Result()
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

// outcomeDone marks an element that needs no removal (dead-lettered, taken
// by another bridge, or already removed).
const outcomeDone = "-"

// handleUntilDone handles one processing-list element, retrying a Redis
// failure with backoff until it succeeds or ctx ends (the element then
// stays in the processing list for recovery). Each retry starts from the
// state the element is in: a raw entry the first attempt wrapped in its
// envelope is retried as that envelope.
func (b *Bridge) handleUntilDone(ctx context.Context, s string) {
	backoff := newBackoff()
	for {
		now, err := b.handle(ctx, s)
		if err == nil || ctx.Err() != nil {
			return
		}
		s = now
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
// list, as the element it returns (the envelope it was given).
func (b *Bridge) handle(ctx context.Context, s string) (string, error) {
	if bt, ok := parseBatch(s); ok {
		return s, b.handleBatch(ctx, s, bt)
	}
	env, isEnvelope := parseEnvelope(s)
	if !isEnvelope {
		env = envelope{ID: newID(), MovedAt: time.Now().UTC(), Entry: s}
		probe := element{raw: s}
		if _, err := probe.parse(b.cfg.Queues, b.cfg.MaxEntryBytes, b.cfg.Kinds); err == nil {
			wrapped := env.encode()
			ok, err := redisx.ListMove.Run(ctx, b.cfg.Redis, []string{b.processing, b.processing}, s, wrapped, 0).Bool()
			if err != nil {
				return s, fmt.Errorf("inbox: give the entry an id: %w", err)
			}
			if !ok {
				return s, nil // another bridge's recovery took it
			}
			s = wrapped
			isEnvelope = true
		}
	}
	el := element{s: s, raw: env.Entry}
	if isEnvelope {
		el.taskID = "inbox:" + env.ID
	}
	outcome, err := b.process(ctx, el)
	if err != nil || outcome == outcomeDone {
		return s, err
	}
	return s, b.finish(ctx, s, outcome)
}

// handleBatch takes the entries of a batch envelope (s) found by recovery
// through to asynq, each with the task id it had from the start (so those
// the crashed bridge enqueued are refused as duplicates), then removes s. A
// Redis failure is retried per entry, so an entry already dead-lettered is
// not dead-lettered again; it returns an error only when ctx ended (s then
// stays for the next recovery).
func (b *Bridge) handleBatch(ctx context.Context, s string, bt batchEnvelope) error {
	outcomes := make([]string, len(bt.Entries))
	els := make([]*element, len(bt.Entries))
	var batched []int
	for k, raw := range bt.Entries {
		els[k] = &element{s: s, raw: raw, taskID: batchTaskID(bt.ID, k), inBatch: true}
		els[k].parse(b.cfg.Queues, b.cfg.MaxEntryBytes, b.cfg.Kinds)
		if b.batchable(els[k]) {
			batched = append(batched, k)
		}
	}
	if len(batched) > 0 {
		sub := make([]*element, len(batched))
		for i, k := range batched {
			sub[i] = els[k]
		}
		got, _, err := b.enqueueBatched(ctx, sub)
		if err != nil {
			return err
		}
		for i, k := range batched {
			outcomes[k] = got[i] // "" for one given back: enqueued below
		}
	}
	for k, el := range els {
		if outcomes[k] != "" {
			continue
		}
		backoff := newBackoff()
		for {
			outcome, err := b.process(ctx, *el)
			if err == nil {
				outcomes[k] = outcome
				break
			}
			if ctx.Err() != nil {
				return err
			}
			b.retryLater(ctx, backoff, "move a recovered inbox entry into the queue", err)
		}
	}
	one := &batch{s: s, outcomes: outcomes}
	backoff := newBackoff()
	for {
		err := b.finishAll(ctx, []*batch{one})
		if err == nil || ctx.Err() != nil {
			return err
		}
		b.retryLater(ctx, backoff, "remove a recovered batch from the processing list", err)
	}
}

// process enqueues (or coalesces, or dead-letters) one entry of the
// processing list, and returns the outcome to count when its element is
// removed (outcomeDone when it needs no removal). It returns an error only
// when Redis or the enqueue failed.
func (b *Bridge) process(ctx context.Context, el element) (string, error) {
	job, err := el.parse(b.cfg.Queues, b.cfg.MaxEntryBytes, b.cfg.Kinds)
	if err != nil {
		return outcomeDone, b.deadLetter(ctx, el, err)
	}
	if el.taskID == "" { // a valid raw entry: handle wraps it first
		return "", fmt.Errorf("inbox: internal error: unwrapped entry in a batch")
	}
	if b.cfg.beforeEnqueue != nil {
		b.cfg.beforeEnqueue()
	}
	if job.Coalesce {
		return b.coalesce(ctx, el, job.Payload)
	}
	taskID, opts := jobOptions(&el, job)
	outcome := OutcomeEnqueued
	info, err := b.cfg.Enqueuer.Enqueue(ctx, job.Payload, opts...)
	switch {
	case errors.Is(err, tasks.ErrDuplicateTask):
		outcome = OutcomeDuplicate
	case errors.Is(err, tasks.ErrInvalidPayload):
		return outcomeDone, b.deadLetter(ctx, el, err)
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

// coalesce adds the ids of a warm or invalidation entry to its cache's
// pending ids; the caller then removes the entry's element from the
// processing list. Adding is idempotent, so a crash in between only adds
// the ids again on recovery.
func (b *Bridge) coalesce(ctx context.Context, el element, p tasks.Payload) (string, error) {
	cache, ids := coalesceArgs(p)
	err := b.addPending(ctx, p.Kind(), cache, ids)
	if errors.Is(err, tasks.ErrInvalidPayload) {
		return outcomeDone, b.deadLetter(ctx, el, err)
	}
	if err != nil {
		return "", err
	}
	b.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "inbox entry coalesced", slog.String("kind", p.Kind()),
		slog.String("cache", cache), slog.Int("ids", len(ids)))
	return OutcomeCoalesced, nil
}

// coalesceArgs returns the cache and ids of a coalesced entry's payload.
func coalesceArgs(p tasks.Payload) (string, []string) {
	switch a := p.(type) {
	case *tasks.WarmArgs:
		return a.Cache, a.IDs
	case *tasks.InvalidateArgs:
		return a.Cache, a.IDs
	}
	return "", nil
}

// addPending adds ids to the pending ids of cache for kind (cache:warm or
// cache:invalidate), in one call.
func (b *Bridge) addPending(ctx context.Context, kind, cache string, ids []string) error {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	if kind == tasks.KindInvalidate {
		return b.cfg.Enqueuer.Invalidate(ctx, cache, args...)
	}
	return b.cfg.Enqueuer.WarmCache(ctx, cache, args...)
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

// deadLetter records an entry on the dead-letter list with the reason. An
// element of its own moves from the processing list to the dead-letter
// list atomically; an entry of a batch is only added (its batch envelope
// leaves once all its entries are handled), so a crash before then
// dead-letters it again on recovery: a dead letter may appear twice, never
// be lost.
func (b *Bridge) deadLetter(ctx context.Context, el element, reason error) error {
	rec, err := json.Marshal(NewDeadLetter(el.raw, reason, time.Now().UTC()))
	if err != nil {
		return fmt.Errorf("inbox: encode dead letter: %w", err)
	}
	moved := true
	if el.inBatch {
		_, err = b.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.LPush(ctx, b.dead, rec)
			if b.cfg.DeadMax > 0 {
				p.LTrim(ctx, b.dead, 0, int64(b.cfg.DeadMax)-1)
			}
			return nil
		})
	} else {
		moved, err = redisx.ListMove.Run(ctx, b.cfg.Redis, []string{b.processing, b.dead}, el.s, rec, b.cfg.DeadMax).Bool()
	}
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
			if bt, ok := parseBatch(s); ok {
				if time.Since(bt.MovedAt) < olderThan {
					continue
				}
			} else if env, ok := parseEnvelope(s); ok {
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
		if _, err := b.handle(ctx, s); err != nil {
			return err
		}
	}
	b.rawSeen = seen
	return nil
}

// DeadCopyBytes is the most of an entry a dead letter keeps: with
// inbox.dead_max letters at most, the list stays within dead_max times
// about this many bytes (plus base64 for entries that are not UTF-8).
const DeadCopyBytes = 16 << 10

// DeadLetter is one element of the dead-letter list.
type DeadLetter struct {
	// Entry is the rejected entry as it was pushed, when it is UTF-8 text
	// of at most DeadCopyBytes; else its first DeadCopyBytes bytes (bad
	// bytes shown as U+FFFD), and Truncated or EntryBase64 say so.
	Entry string `json:"entry"`
	// EntryBase64 holds the entry's original bytes (at most
	// DeadCopyBytes) when they are not valid UTF-8, so a replay is exact.
	EntryBase64 string `json:"entry_base64,omitempty"`
	// Size is the entry's size in bytes.
	Size int `json:"size,omitempty"`
	// Truncated: the entry was larger than DeadCopyBytes; only its start is
	// kept, and it cannot be replayed as it is.
	Truncated bool `json:"truncated,omitempty"`
	// Error says why it was rejected.
	Error string    `json:"error"`
	Time  time.Time `json:"time"`
}

// NewDeadLetter records raw, refused for reason at t.
func NewDeadLetter(raw string, reason error, t time.Time) DeadLetter {
	d := DeadLetter{Size: len(raw), Error: reason.Error(), Time: t}
	kept := raw
	if len(kept) > DeadCopyBytes {
		kept, d.Truncated = kept[:DeadCopyBytes], true
	}
	if utf8.ValidString(raw) {
		d.Entry = trimPartialRune(kept)
		return d
	}
	d.Entry = strings.ToValidUTF8(kept, "\uFFFD")
	d.EntryBase64 = base64.StdEncoding.EncodeToString([]byte(kept))
	return d
}

// trimPartialRune drops an incomplete UTF-8 sequence a cut left at the end.
func trimPartialRune(s string) string {
	for i := 0; i < utf8.UTFMax && len(s) > 0; i++ {
		if utf8.ValidString(s) {
			return s
		}
		s = s[:len(s)-1]
	}
	return s
}

// Replayable returns the entry to push back as it is: its exact bytes. A
// truncated dead letter has none (replay a fixed entry instead).
func (d DeadLetter) Replayable() (string, error) {
	if d.Truncated {
		return "", fmt.Errorf("the entry was %d bytes and only its first %d were kept: replay a fixed entry instead", d.Size, DeadCopyBytes)
	}
	if d.EntryBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(d.EntryBase64)
		if err != nil {
			return "", fmt.Errorf("entry_base64: %w", err)
		}
		return string(b), nil
	}
	if d.Entry == "" {
		return "", errors.New("this dead letter holds no entry to replay; purge it instead")
	}
	return d.Entry, nil
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

// batchEnvelope is a processing-list element holding a batch of entries
// (inbox_take.lua writes it); entry k's task id is batchTaskID(ID, k).
type batchEnvelope struct {
	ID      string    `json:"cachekeeper_inbox_batch"`
	MovedAt time.Time `json:"moved_at"`
	Entries []string  `json:"entries"`
}

// parseBatch recognises a batch envelope.
func parseBatch(s string) (batchEnvelope, bool) {
	if !strings.HasPrefix(s, `{"cachekeeper_inbox_batch":`) {
		return batchEnvelope{}, false
	}
	var e batchEnvelope
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.ID == "" {
		return batchEnvelope{}, false
	}
	return e, true
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
