package inbox

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
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
}

// batch is a batch envelope this bridge took, while its entries are
// enqueued.
type batch struct {
	s string
	// outcomes[k] is entry k's outcome, set by the goroutine that handled
	// it; read once left reaches 0.
	outcomes []string
	left     atomic.Int32
}

// item is entry k of batch b, for the enqueuers.
type item struct {
	el element
	b  *batch
	k  int
}

// take moves up to BatchSize entries from the inbox to the processing list
// as one batch envelope, in one script call, and returns them (none when the
// inbox is empty).
func (b *Bridge) take(ctx context.Context) ([]item, error) {
	id := newID()
	res, err := redisx.InboxTake.Run(ctx, b.cfg.Redis, []string{b.cfg.Key, b.processing},
		time.Now().UTC().Format(time.RFC3339Nano), id, b.cfg.BatchSize).StringSlice()
	if err != nil || len(res) < 2 {
		return nil, err
	}
	bt := &batch{s: res[0], outcomes: make([]string, len(res)-1)}
	bt.left.Store(int32(len(res) - 1))
	items := make([]item, len(res)-1)
	for k, raw := range res[1:] {
		items[k] = item{el: element{s: bt.s, raw: raw, taskID: batchTaskID(id, k), inBatch: true}, b: bt, k: k}
	}
	return items, nil
}

// batchTaskID is the task id of entry k (from 0) of batch id.
func batchTaskID(id string, k int) string { return "inbox:" + id + "-" + strconv.Itoa(k) }

// enqueueLoop enqueues the items of work until work is closed, each retried
// on Redis failures until it succeeds or ctx ends, and passes each batch to
// acks once all its entries are handled. Once ctx has ended it only drains
// work: those batches stay in the processing list for recovery.
func (b *Bridge) enqueueLoop(ctx context.Context, work <-chan item, acks chan<- *batch) {
	for it := range work {
		backoff := newBackoff()
		for ctx.Err() == nil {
			outcome, err := b.process(ctx, it.el)
			if err == nil {
				it.b.outcomes[it.k] = outcome
				if it.b.left.Add(-1) == 0 {
					acks <- it.b
				}
				break
			}
			b.retryLater(ctx, backoff, "move an inbox entry into the queue", err)
		}
	}
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
