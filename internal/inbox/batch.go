package inbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// The batched path: take a batch envelope, enqueue its entries on the
// enqueuers, remove it once all are handled (see the package doc).

// element is one entry to take through to asynq, and where it sits.
type element struct {
	// s is the processing-list element holding the entry: a batch
	// envelope, an envelope of one entry, or the raw entry itself.
	s string
	// raw is the entry as the producer pushed it.
	raw string
	// taskID is "inbox:<id>", fixed before the enqueue; "" for a raw
	// entry not yet wrapped (only an invalid one reaches process so).
	taskID string
	// inBatch: s holds other entries too, so dead-lettering this one
	// leaves s in place (it goes once all its entries are handled).
	inBatch bool
	// job and perr are the result of parsing raw, once parse has run.
	job  *Job
	perr error
}

// parse parses raw once; later calls return the first result. An entry
// larger than maxBytes (0: no limit) is refused unread.
func (el *element) parse(queues []string, maxBytes int, kinds KindResolver) (Job, error) {
	if el.job == nil {
		var j Job
		var err error
		if maxBytes > 0 && len(el.raw) > maxBytes {
			err = invalid("entry is %d bytes, more than inbox.max_entry_bytes (%d): split the job, or raise the limit", len(el.raw), maxBytes)
		} else {
			j, err = Parse([]byte(el.raw), queues, kinds)
		}
		el.job, el.perr = &j, err
	}
	return *el.job, el.perr
}

// batch is a batch envelope this bridge took, while its entries are
// enqueued.
type batch struct {
	s     string
	items []item
	// outcomes[k] is entry k's outcome, set by the goroutine that handled
	// it; read once left reaches 0.
	outcomes []string
	left     atomic.Int32
}

// item is entry k of batch b.
type item struct {
	el element
	b  *batch
	k  int
}

// take moves up to BatchSize entries from the inbox to the processing list
// as one batch envelope, in one script call, and returns it (nil when the
// inbox is empty).
func (b *Bridge) take(ctx context.Context) (*batch, error) {
	id := newID()
	res, err := redisx.InboxTake.Run(ctx, b.cfg.Redis, []string{b.cfg.Key, b.processing},
		time.Now().UTC().Format(time.RFC3339Nano), id, b.cfg.BatchSize).StringSlice()
	if err != nil || len(res) < 2 {
		return nil, err
	}
	bt := &batch{s: res[0], outcomes: make([]string, len(res)-1), items: make([]item, len(res)-1)}
	bt.left.Store(int32(len(res) - 1))
	for k, raw := range res[1:] {
		bt.items[k] = item{el: element{s: bt.s, raw: raw, taskID: batchTaskID(id, k), inBatch: true}, b: bt, k: k}
	}
	return bt, nil
}

// batchTaskID is the task id of entry k (from 0) of batch id.
func batchTaskID(id string, k int) string { return "inbox:" + id + "-" + strconv.Itoa(k) }

// batchLoop handles the batches of work until work is closed: the entries
// the batched enqueue takes (Config.Batch) go to Redis in one pipeline per
// batch, the others (and those it gives back) to single, one entry at a
// time. Once ctx has ended it only drains work: those batches stay in the
// processing list for recovery.
func (b *Bridge) batchLoop(ctx context.Context, work <-chan *batch, single chan<- item, acks chan<- *batch) {
	for bt := range work {
		if ctx.Err() != nil {
			continue
		}
		var batched, coalesced []*item
		for k := range bt.items {
			it := &bt.items[k]
			it.el.parse(b.cfg.Queues, b.cfg.MaxEntryBytes, b.cfg.Kinds)
			switch {
			case b.batchable(&it.el):
				batched = append(batched, it)
			case coalescable(&it.el):
				coalesced = append(coalesced, it)
			default:
				single <- *it
			}
		}
		b.coalesceItems(ctx, coalesced, single, acks)
		if len(batched) == 0 {
			continue
		}
		els := make([]*element, len(batched))
		for k, it := range batched {
			els[k] = &it.el
		}
		outcomes, plain, err := b.enqueueBatched(ctx, els)
		if err != nil {
			continue // ctx ended: the batch stays for recovery
		}
		for _, k := range plain {
			single <- *batched[k]
		}
		for k, it := range batched {
			if outcomes[k] != "" {
				b.done(it, outcomes[k], acks)
			}
		}
	}
}

// done records an entry's outcome and passes its batch to acks once all
// its entries are handled.
func (b *Bridge) done(it *item, outcome string, acks chan<- *batch) {
	it.b.outcomes[it.k] = outcome
	if it.b.left.Add(-1) == 0 {
		acks <- it.b
	}
}

// enqueueLoop enqueues the items of single one at a time until single is
// closed, each retried on Redis failures until it succeeds or ctx ends.
// Once ctx has ended it only drains single.
func (b *Bridge) enqueueLoop(ctx context.Context, single <-chan item, acks chan<- *batch) {
	for it := range single {
		backoff := newBackoff()
		for ctx.Err() == nil {
			outcome, err := b.process(ctx, it.el)
			if err == nil {
				b.done(&it, outcome, acks)
				break
			}
			b.retryLater(ctx, backoff, "move an inbox entry into the queue", err)
		}
	}
}

// coalescable says whether el is a valid coalesced entry of a batch.
func coalescable(el *element) bool {
	return el.job != nil && el.perr == nil && el.job.Coalesce && el.taskID != ""
}

// coalesceKey groups coalesced entries: one pending set per kind and cache.
type coalesceKey struct{ kind, cache string }

// coalesceItems adds the ids of the coalesced entries of one batch to their
// caches' pending ids, one call per kind and cache (of up to
// tasks.MaxInvalidateIDs ids), so that single-id entries cost one script
// call per batch rather than one each. A group the client refuses goes to
// single, where each entry is handled (and dead-lettered) on its own; a
// Redis failure is retried until ctx ends (the batch then stays in the
// processing list for recovery).
func (b *Bridge) coalesceItems(ctx context.Context, items []*item, single chan<- item, acks chan<- *batch) {
	var order []coalesceKey
	groups := map[coalesceKey][]*item{}
	for _, it := range items {
		cache, _ := coalesceArgs(it.el.job.Payload)
		k := coalesceKey{it.el.job.Payload.Kind(), cache}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	for _, k := range order {
		group := groups[k]
		for len(group) > 0 {
			// A chunk of whole entries holding at most MaxInvalidateIDs ids.
			n, ids := 0, []string(nil)
			for n < len(group) {
				_, more := coalesceArgs(group[n].el.job.Payload)
				if n > 0 && len(ids)+len(more) > tasks.MaxInvalidateIDs {
					break
				}
				ids = append(ids, more...)
				n++
			}
			chunk := group[:n]
			group = group[n:]
			if b.cfg.beforeEnqueue != nil {
				b.cfg.beforeEnqueue()
			}
			backoff := newBackoff()
			for {
				err := b.addPending(ctx, k.kind, k.cache, ids)
				if err == nil {
					for _, it := range chunk {
						b.done(it, OutcomeCoalesced, acks)
					}
					b.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "inbox entries coalesced", slog.String("kind", k.kind),
						slog.String("cache", k.cache), slog.Int("entries", len(chunk)), slog.Int("ids", len(ids)))
					break
				}
				if errors.Is(err, tasks.ErrInvalidPayload) {
					for _, it := range chunk {
						single <- *it
					}
					break
				}
				if ctx.Err() != nil {
					return
				}
				b.retryLater(ctx, backoff, "add inbox entries to their caches' pending ids", err)
			}
		}
	}
}

// batchable says whether el takes the batched enqueue: a valid entry of a
// batch, neither coalesced nor delayed (asynq schedules those with other
// commands), while the batched enqueue works.
func (b *Bridge) batchable(el *element) bool {
	return b.cfg.Batch != nil && !b.batchOff.Load() && el.job != nil && el.perr == nil &&
		!el.job.Coalesce && !el.job.Delayed && el.taskID != ""
}

// jobOptions returns the task id and the options to enqueue el's job with.
func jobOptions(el *element, job Job) (string, []tasks.Option) {
	if job.TaskID != "" {
		return job.TaskID, job.Options
	}
	opts := make([]tasks.Option, 0, len(job.Options)+1)
	return el.taskID, append(append(opts, job.Options...), tasks.TaskID(el.taskID))
}

// enqueueBatched enqueues the jobs of els (parsed, batchable) through
// Config.Batch, retrying those that met a Redis failure until they succeed
// or ctx ends (the error then). It returns each element's outcome, and the
// indexes of the elements the batched enqueue gave back, to be enqueued the
// plain way (their outcome is "").
func (b *Bridge) enqueueBatched(ctx context.Context, els []*element) (outcomes []string, plain []int, err error) {
	outcomes = make([]string, len(els))
	todo := make([]int, len(els))
	for k := range todo {
		todo[k] = k
	}
	backoff := newBackoff()
	for len(todo) > 0 {
		jobs := make([]BatchJob, len(todo))
		for i, k := range todo {
			if b.cfg.beforeEnqueue != nil {
				b.cfg.beforeEnqueue()
			}
			_, opts := jobOptions(els[k], *els[k].job)
			jobs[i] = BatchJob{Payload: els[k].job.Payload, Options: opts}
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		errs := b.cfg.Batch.EnqueueBatch(ctx, jobs)
		var failed []int
		var lastErr error
		enqueued, duplicates := 0, 0
		for i, k := range todo {
			switch err := errs[i]; {
			case err == nil:
				outcomes[k] = OutcomeEnqueued
				enqueued++
			case errors.Is(err, tasks.ErrDuplicateTask):
				outcomes[k] = OutcomeDuplicate
				duplicates++
			case errors.Is(err, tasks.ErrInvalidPayload):
				if err := b.deadLetter(ctx, *els[k], err); err != nil {
					failed, lastErr = append(failed, k), err
					continue
				}
				outcomes[k] = outcomeDone
			case errors.Is(err, ErrNotBatched):
				b.batchOffOnce(ctx)
				plain = append(plain, k)
			default:
				failed, lastErr = append(failed, k), err
			}
		}
		if b.cfg.Logger.Enabled(ctx, slog.LevelDebug) {
			b.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "inbox entries enqueued in a batch", slog.Int("enqueued", enqueued),
				slog.Int("duplicates", duplicates), slog.Int("failed", len(failed)), slog.Int("plain", len(plain)))
		}
		todo = failed
		if len(todo) > 0 {
			b.retryLater(ctx, backoff, "enqueue a batch of inbox entries", lastErr)
		}
	}
	return outcomes, plain, nil
}

// batchOffOnce turns the batched enqueue off for this bridge, saying why
// once.
func (b *Bridge) batchOffOnce(ctx context.Context) {
	if b.batchOff.Swap(true) {
		return
	}
	why := "the batched enqueue gave a job back"
	if be, ok := b.cfg.Batch.(*BatchEnqueuer); ok && be.Broken() != "" {
		why = be.Broken()
	}
	b.cfg.Logger.LogAttrs(ctx, slog.LevelError, "inbox: batched enqueue disabled, entries are enqueued one at a time",
		slog.String("inbox", b.cfg.Key), slog.String("reason", why))
}

// ackLoop removes handled batches from the processing list until acks is
// closed: whatever has arrived while the previous removal ran goes in one
// script call, so removal keeps pace with any number of enqueuers. A failed
// removal is retried until ctx ends; the batch then stays in the processing
// list, and recovery finds its jobs already enqueued (duplicates).
func (b *Bridge) ackLoop(ctx context.Context, acks <-chan *batch) {
	const most = 100
	pending := make([]*batch, 0, most)
	for bt := range acks {
		pending = append(pending[:0], bt)
	more:
		for len(pending) < most {
			select {
			case bt, ok := <-acks:
				if !ok {
					break more
				}
				pending = append(pending, bt)
			default:
				break more
			}
		}
		backoff := newBackoff()
		for ctx.Err() == nil {
			err := b.finishAll(ctx, pending)
			if err == nil {
				break
			}
			b.retryLater(ctx, backoff, "remove handled entries from the processing list", err)
		}
	}
}

// finishAll removes handled batches from the processing list in one script
// call and counts their entries' outcomes.
func (b *Bridge) finishAll(ctx context.Context, batches []*batch) error {
	if b.cfg.beforeRemove != nil {
		b.cfg.beforeRemove()
	}
	args := make([]any, len(batches))
	for k, bt := range batches {
		args[k] = bt.s
	}
	if err := redisx.InboxAck.Run(ctx, b.cfg.Redis, []string{b.processing}, args...).Err(); err != nil {
		return fmt.Errorf("inbox: remove %d handled batches from %s: %w", len(batches), b.processing, err)
	}
	for _, bt := range batches {
		for _, o := range bt.outcomes {
			if o != outcomeDone {
				b.cfg.OnOutcome(o)
			}
		}
	}
	return nil
}
