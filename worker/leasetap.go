package worker

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// The lease tap watches what this process's asynq servers write about the
// jobs they hold, on each server's own Redis client (a hook, innermost, so
// it sees every command as it goes on the wire), and keeps a worker that was
// cut off or paused from changing a job another worker has taken over:
//
//   - it books each job's lease as asynq's dequeue script sets it (the
//     task id read from the script's reply, asynq's protobuf message,
//     field 3) and each extension the heartbeat makes;
//   - the heartbeat's lease extension (asynq's ZADD XX) becomes
//     redisx.LeaseExtendOwned: only leases whose score is still the one this
//     worker wrote are extended, and the others are reported lost, so their
//     jobs are cancelled (selfFence) and fenced;
//   - asynq's writes that end a job (done, complete, retry, archive,
//     requeue: scripts over asynq:{queue}:active whose ARGV[1] is the task
//     id) are dropped for a fenced id: the copy another worker runs is left
//     alone. asynq makes that write once per finished handler, so the mark
//     is used up by it (or by the next dequeue of the same id);
//   - the heartbeat's own health: a beat counts as reaching Redis only when
//     its server state and every lease extension were written, so a worker
//     whose writes Redis refuses (out of memory, a missing permission)
//     counts as cut off although Redis answers its reads.
//
// This leans on asynq's private key layout and script shapes (v0.26), like
// dequeue.go; TestLeaseTapSeesAsynqsWrites fails when an upgrade changes them.

// heldLease is a job this process's servers hold.
type heldLease struct {
	queue string
	// score is the lease expiry (unix s) this worker last wrote; alt the
	// expiry of a later write whose reply was lost (0: none).
	score, alt int64
	// dequeued is when the dequeue that took the job was sent.
	dequeued time.Time
}

// leaseBook is the process-wide record the taps of every server share.
type leaseBook struct {
	rdb    redis.UniversalClient // for ownership checks (any client reaches the lease keys)
	logger *slog.Logger

	mu     sync.Mutex
	held   map[string]*heldLease
	fenced map[string]struct{}
	beats  []*beatHealth
	// lost is told (outside mu) the ids of jobs another worker took over.
	lost func(ids []string)
	// dropped counts task writes left out for fenced jobs (for tests).
	dropped atomic.Int64
}

func newLeaseBook(rdb redis.UniversalClient, logger *slog.Logger) *leaseBook {
	return &leaseBook{rdb: rdb, logger: logger, held: map[string]*heldLease{}, fenced: map[string]struct{}{}}
}

// beatHealth is one server's heartbeat as seen on its client.
type beatHealth struct {
	ok           atomic.Int64 // unix nanos of the last beat whose writes all succeeded
	leaseFailing atomic.Bool
	// refused: Redis answered the last heartbeat write with an error (out of
	// memory, no permission), as opposed to not answering at all.
	refused atomic.Bool
}

func (b *beatHealth) serverState(err error, hasJobs bool) {
	if err != nil {
		b.refused.Store(redisx.IsServerError(err))
		return
	}
	if !hasJobs {
		b.leaseFailing.Store(false)
	}
	if !b.leaseFailing.Load() {
		b.ok.Store(time.Now().UnixNano())
		b.refused.Store(false)
	}
}

func (b *beatHealth) leases(err error) {
	b.leaseFailing.Store(err != nil)
	b.refused.Store(err != nil && redisx.IsServerError(err))
	if err == nil {
		b.ok.Store(time.Now().UnixNano())
	}
}

// beatsRefused reports whether Redis refused a server's last heartbeat write.
func (lb *leaseBook) beatsRefused() bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, b := range lb.beats {
		if b.refused.Load() {
			return true
		}
	}
	return false
}

func (lb *leaseBook) newBeat() *beatHealth {
	b := &beatHealth{}
	b.ok.Store(time.Now().UnixNano())
	lb.mu.Lock()
	lb.beats = append(lb.beats, b)
	lb.mu.Unlock()
	return b
}

// beatAge is how long ago the stalest server last wrote a whole heartbeat.
func (lb *leaseBook) beatAge(now time.Time) time.Duration {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var age time.Duration
	for _, b := range lb.beats {
		age = max(age, now.Sub(time.Unix(0, b.ok.Load())))
	}
	return age
}

// fence marks ids: asynq's next write ending each of these jobs is dropped.
func (lb *leaseBook) fence(ids ...string) {
	lb.mu.Lock()
	for _, id := range ids {
		lb.fenced[id] = struct{}{}
	}
	lb.mu.Unlock()
}

func (lb *leaseBook) takeFenced(id string) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if _, ok := lb.fenced[id]; !ok {
		return false
	}
	delete(lb.fenced, id)
	delete(lb.held, id)
	return true
}

func (lb *leaseBook) isFenced(id string) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	_, ok := lb.fenced[id]
	return ok
}

func (lb *leaseBook) dequeued(id, queue string, score int64, sent time.Time) {
	lb.mu.Lock()
	lb.held[id] = &heldLease{queue: queue, score: score, dequeued: sent}
	delete(lb.fenced, id) // a new run of the same job: its writes are its own
	lb.mu.Unlock()
}

func (lb *leaseBook) forget(id string) {
	lb.mu.Lock()
	delete(lb.held, id)
	lb.mu.Unlock()
}

// lease returns what the book holds for id.
func (lb *leaseBook) lease(id string) (heldLease, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	h, ok := lb.held[id]
	if !ok {
		return heldLease{}, false
	}
	return *h, true
}

// ownedArgs builds LeaseExtendOwned's ARGV for ids (after newScore).
func (lb *leaseBook) ownedArgs(newScore string, ids []string) []any {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	args := make([]any, 0, 1+3*len(ids))
	args = append(args, newScore)
	for _, id := range ids {
		want, alt := "", ""
		if h, ok := lb.held[id]; ok {
			want = strconv.FormatInt(h.score, 10)
			if h.alt != 0 {
				alt = strconv.FormatInt(h.alt, 10)
			}
		}
		args = append(args, id, want, alt)
	}
	return args
}

// extended records the outcome of an extension to score of ids.
func (lb *leaseBook) extended(ids []string, score int64, err error, lost []string) {
	gone := make(map[string]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, id := range ids {
		h, ok := lb.held[id]
		if !ok || gone[id] {
			continue
		}
		if err != nil {
			h.alt = score // it may have been written all the same
		} else {
			h.score, h.alt = score, 0
		}
	}
}

// owned checks in Redis which of ids (running jobs of this worker, all of
// queue) still hold the lease this worker wrote; it returns the lost ones.
func (lb *leaseBook) owned(ctx context.Context, queue string, ids []string) ([]string, error) {
	return lb.runOwned(ctx, lb.rdb, queue, "", ids)
}

func (lb *leaseBook) runOwned(ctx context.Context, rdb redis.UniversalClient, queue, newScore string, ids []string) ([]string, error) {
	res, err := redisx.LeaseExtendOwned.Run(ctx, rdb, []string{keys.AsynqLease(queue)}, lb.ownedArgs(newScore, ids)...).StringSlice()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return res, err
}

// tapConnOpt is an asynq.RedisConnOpt whose client (one per server) carries
// a lease tap, added last so that it runs closest to the wire.
type tapConnOpt struct {
	base asynq.RedisConnOpt
	book *leaseBook
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (o tapConnOpt) MakeRedisClient() interface{} {
	c, ok := o.base.MakeRedisClient().(redis.UniversalClient)
	if !ok || c == nil {
		return o.base.MakeRedisClient() // asynq reports the unsupported option
	}
	c.AddHook(&leaseTap{book: o.book, beat: o.book.newBeat(), client: c})
	return c
}

type leaseTap struct {
	book   *leaseBook
	beat   *beatHealth
	client redis.UniversalClient
}

func (t *leaseTap) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *leaseTap) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (t *leaseTap) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if q, ok := dequeueQueue(cmd); ok {
			return t.dequeue(ctx, cmd, next, q)
		}
		if q, ok := leaseExtension(cmd); ok {
			return t.extend(ctx, cmd, q)
		}
		ks, argv, ok := evalParts(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		if isServerState(ks, argv) {
			err := next(ctx, cmd)
			if !redisx.IsNoScript(err) { // go-redis sends the script itself next
				t.beat.serverState(err, len(argv) > 2)
			}
			return err
		}
		if id, ok := taskWrite(ks, argv); ok {
			if t.book.takeFenced(id) {
				t.book.dropped.Add(1)
				t.book.logger.Info("left the job to the worker that took it over: this worker's outcome not written",
					slog.String("task_id", id))
				if c, ok := cmd.(*redis.Cmd); ok {
					c.SetVal("OK")
				}
				return nil
			}
			err := next(ctx, cmd)
			if err == nil {
				t.book.forget(id)
			}
			return err
		}
		return next(ctx, cmd)
	}
}

func (t *leaseTap) dequeue(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook, queue string) error {
	sent := time.Now()
	err := next(ctx, cmd)
	if err != nil {
		return err
	}
	c, ok := cmd.(*redis.Cmd)
	if !ok {
		return nil
	}
	msg, _ := c.Val().(string)
	score, _ := asInt64(cmd.Args()[7]) // ARGV[1]: the lease expiry
	if id := taskIDOf([]byte(msg)); id != "" {
		t.book.dequeued(id, queue, score, sent)
	}
	return nil
}

// extend runs asynq's lease extension as LeaseExtendOwned: fenced ids are
// left out, lost ones reported.
func (t *leaseTap) extend(ctx context.Context, cmd redis.Cmder, queue string) error {
	args := cmd.Args() // zadd key xx score id [score id ...]
	var ids []string
	var score int64
	for i := 3; i+1 < len(args); i += 2 {
		score, _ = asInt64(args[i])
		id, _ := args[i+1].(string)
		if id != "" && !t.book.isFenced(id) {
			ids = append(ids, id)
		}
	}
	ic, _ := cmd.(*redis.IntCmd)
	if len(ids) == 0 {
		if ic != nil {
			ic.SetVal(0)
		}
		return nil
	}
	lost, err := t.book.runOwned(ctx, t.client, queue, strconv.FormatInt(score, 10), ids)
	t.book.extended(ids, score, err, lost)
	t.beat.leases(err)
	if err != nil {
		cmd.SetErr(err)
		return err
	}
	if ic != nil {
		ic.SetVal(int64(len(ids) - len(lost)))
	}
	if len(lost) > 0 && t.book.lost != nil {
		t.book.lost(lost)
	}
	return nil
}

// taskIDOf reads the id (field 3) of an encoded asynq task message.
func taskIDOf(msg []byte) string {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return ""
		}
		msg = msg[n:]
		if num == 3 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return ""
		}
		msg = msg[n:]
	}
	return ""
}

// leaseExtension returns the queue of cmd when cmd is asynq's lease
// extension: ZADD asynq:{queue}:lease XX score id ...
func leaseExtension(cmd redis.Cmder) (string, bool) {
	args := cmd.Args()
	if len(args) < 5 {
		return "", false
	}
	name, _ := args[0].(string)
	xx, _ := args[2].(string)
	if !strings.EqualFold(name, "zadd") || !strings.EqualFold(xx, "xx") {
		return "", false
	}
	key, _ := args[1].(string)
	return asynqQueueOf(key, "}:lease")
}

func asynqQueueOf(key, suffix string) (string, bool) {
	if !strings.HasPrefix(key, asynqKeyOpen) || !strings.HasSuffix(key, suffix) || len(key) < len(asynqKeyOpen)+len(suffix) {
		return "", false
	}
	return key[len(asynqKeyOpen) : len(key)-len(suffix)], true
}

// evalParts splits an EVAL or EVALSHA into its keys and arguments.
func evalParts(cmd redis.Cmder) ([]string, []any, bool) {
	args := cmd.Args()
	if len(args) < 3 {
		return nil, nil, false
	}
	name, _ := args[0].(string)
	if !strings.EqualFold(name, "evalsha") && !strings.EqualFold(name, "eval") {
		return nil, nil, false
	}
	n, ok := asInt64(args[2])
	if !ok || n < 0 || int(n) > len(args)-3 {
		return nil, nil, false
	}
	ks := make([]string, n)
	for i := range ks {
		ks[i], _ = args[3+i].(string)
	}
	return ks, args[3+n:], true
}

// isServerState reports asynq's heartbeat write of a server's state: KEYS
// asynq:servers:{...} and asynq:workers:{...}, ARGV TTL, info, then pairs.
func isServerState(ks []string, argv []any) bool {
	return len(ks) == 2 && len(argv) >= 2 &&
		strings.HasPrefix(ks[0], keys.AsynqServers+":{") && strings.HasPrefix(ks[1], keys.AsynqWorkers+":{")
}

// taskWrite returns the task id of asynq's scripts that end a job (done,
// complete, retry, archive, requeue): one of their keys is the queue's
// active list and ARGV[1] is the id. The dequeue script is told apart
// before (its ARGV[1] is a number).
func taskWrite(ks []string, argv []any) (string, bool) {
	if len(argv) == 0 {
		return "", false
	}
	for _, k := range ks {
		if _, ok := asynqQueueOf(k, "}:active"); ok {
			id, ok := argv[0].(string)
			return id, ok && id != ""
		}
	}
	return "", false
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		return int64(n), true
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	}
	return 0, false
}
