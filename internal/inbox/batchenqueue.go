package inbox

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// The batched enqueue: several jobs per round trip, each built by asynq's
// own code.
//
// asynq v0.26 has no batch enqueue of its own; its Client.Enqueue of a task
// without ProcessAt/ProcessIn, Unique or Group runs (rdb.Enqueue):
//
//  1. SADD asynq:queues <queue>, only the first time that client sees the
//     queue (it remembers the queues it registered);
//  2. its enqueue script through go-redis Script.Run (EVALSHA, and EVAL of
//     the source after a NOSCRIPT), with KEYS asynq:{<queue>}:t:<task id>
//     and asynq:{<queue>}:pending; the script replies 1 when it enqueued
//     the task and 0 when a task with that id exists (a duplicate).
//
// BatchEnqueuer builds every job with a tasks.Client whose go-redis client
// never connects: a hook records those commands and answers them as Redis
// would have (1 to the script, 1 to SADD), so asynq's code encodes the
// task exactly as it would for Redis. The recorded commands are then sent
// unchanged, in order, in one pipeline on the real client, and each
// script's reply is mapped back to its job: 1 enqueued, 0 duplicate.
//
// What this relies on is checked for every job: the recorded commands must
// be the SADD above (optional) and then exactly one script call with those
// two keys, for the task id and queue asynq reported, in state pending.
// Anything else (a newer asynq doing something else) disables batching for
// the process (one error logged by the caller) and every job takes the
// plain tasks.Client path (ErrNotBatched). TestBatchEnqueueReliesOnAsynq
// fails if asynq stops behaving so.
//
// The enqueue script's source is learnt by answering the recording
// client's first EVALSHA with NOSCRIPT: go-redis then sends EVAL with the
// source, which is recorded (and sent) as it is. On replay, an EVALSHA the
// server answers NOSCRIPT (its script cache was flushed) is sent again
// after SCRIPT LOAD of the learnt source.
//
// The queue registration: a SADD that fails is sent again with its job's
// retry, by a fresh recording client (which records SADD again). Jobs of a
// queue may reach Redis a moment before the registration when another
// pipeline carries it; asynq's servers process the queues they are
// configured with whatever asynq:queues holds, and the Inspector lists the
// queue once the SADD lands.

// BatchJob is one job for EnqueueBatch.
type BatchJob struct {
	Payload tasks.Payload
	Options []tasks.Option
}

// Batcher enqueues several jobs in few round trips; *BatchEnqueuer is one.
// The error for jobs[i] is nil (enqueued), one wrapping
// tasks.ErrDuplicateTask or tasks.ErrInvalidPayload, ErrNotBatched (enqueue
// it the plain way), or any other (a Redis failure: retry the job; retrying
// one that did reach Redis reports it as a duplicate).
type Batcher interface {
	EnqueueBatch(ctx context.Context, jobs []BatchJob) []error
}

// ErrNotBatched says a job cannot take the batched path; enqueue it with
// tasks.Client.Enqueue.
var ErrNotBatched = errors.New("inbox: job not batched")

// BatchEnqueuer is the Batcher over asynq's own commands (see above). It is
// safe for concurrent use.
type BatchEnqueuer struct {
	rdb  redis.UniversalClient
	opts []tasks.ClientOption
	// rec is the recording client; replaced when a queue registration
	// failed, so that the next recording registers the queue again.
	rec atomic.Pointer[recordingClient]
	// scripts maps a script's SHA-1 to its source, learnt from EVAL.
	scripts sync.Map
	// broken, once set, says why asynq did not behave as relied on.
	broken atomic.Pointer[string]

	mu      sync.Mutex
	retired []*recordingClient
}

type recordingClient struct {
	rc     *redis.Client
	client *tasks.Client
}

// NewBatchEnqueuer returns a batched enqueuer over rdb whose jobs are
// built by a tasks.Client with opts: give the options of the bridge's
// Enqueuer, so that both accept and refuse the same jobs. Close releases
// it.
func NewBatchEnqueuer(rdb redis.UniversalClient, opts ...tasks.ClientOption) (*BatchEnqueuer, error) {
	if rdb == nil {
		return nil, errors.New("inbox: NewBatchEnqueuer needs a Redis client")
	}
	e := &BatchEnqueuer{rdb: rdb, opts: opts}
	e.rec.Store(e.newRecording())
	return e, nil
}

// Close releases the recording clients (rdb stays open).
func (e *BatchEnqueuer) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.rec.Load().rc.Close()
	for _, old := range e.retired {
		_ = old.rc.Close()
	}
	e.retired = nil
	return err
}

// replaceRecording puts a fresh recording client in place; the old one may
// still be in use, so it is closed by Close.
func (e *BatchEnqueuer) replaceRecording() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.retired = append(e.retired, e.rec.Swap(e.newRecording()))
}

// Broken says why batching was disabled ("" while it works).
func (e *BatchEnqueuer) Broken() string {
	if p := e.broken.Load(); p != nil {
		return *p
	}
	return ""
}

var errRecordingOnly = errors.New("inbox: the recording client never connects")

func (e *BatchEnqueuer) newRecording() *recordingClient {
	rc := redis.NewClient(&redis.Options{
		Addr:   "recording.invalid:1",
		Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, errRecordingOnly },
		// nothing to retry: every command is answered by the hook
		MaxRetries: -1,
		// no connection, so no maintenance notifications (and none of
		// their background goroutines)
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	rc.AddHook(recordHook{scripts: &e.scripts})
	return &recordingClient{rc: rc, client: tasks.NewClientFromRedis(rc, e.opts...)}
}

// recording collects the commands of one job's enqueue.
type recording struct {
	cmds [][]any
	// unexpected names a command the hook did not expect.
	unexpected string
}

type recordingKey struct{}

// recordHook answers and records the commands asynq sends on the recording
// client; nothing reaches a network.
type recordHook struct{ scripts *sync.Map }

func (recordHook) DialHook(redis.DialHook) redis.DialHook {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errRecordingOnly }
}

func (h recordHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		rec, ok := ctx.Value(recordingKey{}).(*recording)
		if !ok {
			return errRecordingOnly
		}
		args := cmd.Args()
		switch name := strings.ToLower(cmd.Name()); {
		case name == "evalsha" && len(args) > 1:
			sha, _ := args[1].(string)
			if _, known := h.scripts.Load(sha); !known {
				// go-redis falls back to EVAL with the source
				return redis.ErrNoScript
			}
			if c, ok := cmd.(*redis.Cmd); ok {
				c.SetVal(int64(1))
				rec.cmds = append(rec.cmds, args)
				return nil
			}
		case name == "eval" && len(args) > 1:
			if src, ok := args[1].(string); ok {
				if c, ok := cmd.(*redis.Cmd); ok {
					sum := sha1.Sum([]byte(src))
					h.scripts.Store(hex.EncodeToString(sum[:]), src)
					c.SetVal(int64(1))
					rec.cmds = append(rec.cmds, args)
					return nil
				}
			}
		case name == "sadd":
			if c, ok := cmd.(*redis.IntCmd); ok {
				c.SetVal(1)
				rec.cmds = append(rec.cmds, args)
				return nil
			}
		}
		rec.unexpected = fmt.Sprintf("%T %v", cmd, args)
		return fmt.Errorf("inbox: asynq sent an unexpected command: %s", rec.unexpected)
	}
}

func (recordHook) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if rec, ok := ctx.Value(recordingKey{}).(*recording); ok {
			rec.unexpected = fmt.Sprintf("a pipeline of %d commands", len(cmds))
		}
		return errRecordingOnly
	}
}

// sent is one recorded command on its way to Redis.
type sent struct {
	args   []any
	job    int
	script bool // the enqueue script (else the queue registration)
}

// EnqueueBatch enqueues jobs in one pipeline (see Batcher for the errors).
func (e *BatchEnqueuer) EnqueueBatch(ctx context.Context, jobs []BatchJob) []error {
	errs := make([]error, len(jobs))
	if e.Broken() != "" {
		for i := range errs {
			errs[i] = ErrNotBatched
		}
		return errs
	}
	rc := e.rec.Load()
	cmds := make([]sent, 0, len(jobs)+1)
	for i, j := range jobs {
		rec := &recording{}
		info, err := rc.client.Enqueue(context.WithValue(ctx, recordingKey{}, rec), j.Payload, j.Options...)
		switch {
		case rec.unexpected != "":
			e.disable("asynq sent an unexpected command: " + rec.unexpected)
			errs[i] = ErrNotBatched
			continue
		case err != nil && errors.Is(err, tasks.ErrInvalidPayload):
			errs[i] = err
			continue
		case err != nil:
			e.disable("asynq's enqueue failed on the recording client: " + err.Error())
			errs[i] = ErrNotBatched
			continue
		}
		if why := checkRecorded(rec.cmds, info); why != "" {
			e.disable(why)
			errs[i] = ErrNotBatched
			continue
		}
		for k, args := range rec.cmds {
			cmds = append(cmds, sent{args: args, job: i, script: k == len(rec.cmds)-1})
		}
	}
	if len(cmds) == 0 {
		return errs
	}
	e.replay(ctx, cmds, errs)
	return errs
}

// checkRecorded says how one job's recorded commands differ from what
// rdb.Enqueue sends ("" when they do not).
func checkRecorded(cmds [][]any, info *asynq.TaskInfo) string {
	if info == nil || info.State != asynq.TaskStatePending {
		return fmt.Sprintf("asynq's enqueue did not report a pending task (%v)", info)
	}
	if len(cmds) == 0 {
		return "asynq's enqueue sent no command"
	}
	for _, c := range cmds[:len(cmds)-1] {
		if len(c) != 3 || !strings.EqualFold(fmt.Sprint(c[0]), "sadd") || c[1] != "asynq:queues" || c[2] != info.Queue {
			return fmt.Sprintf("asynq's enqueue sent %v before its script, want only SADD asynq:queues %s", c, info.Queue)
		}
	}
	last := cmds[len(cmds)-1]
	prefix := "asynq:{" + info.Queue + "}:"
	if len(last) < 5 || (!strings.EqualFold(fmt.Sprint(last[0]), "evalsha") && !strings.EqualFold(fmt.Sprint(last[0]), "eval")) ||
		fmt.Sprint(last[2]) != "2" || last[3] != prefix+"t:"+info.ID || last[4] != prefix+"pending" {
		return fmt.Sprintf("asynq's enqueue ended with %.200v, want its enqueue script on %st:%s and %spending", last, prefix, info.ID, prefix)
	}
	return ""
}

func (e *BatchEnqueuer) disable(why string) {
	e.broken.CompareAndSwap(nil, &why)
}

// replay sends cmds in one pipeline, sends again after SCRIPT LOAD those
// answered NOSCRIPT, and sets errs[job] from the replies.
func (e *BatchEnqueuer) replay(ctx context.Context, cmds []sent, errs []error) {
	results := e.pipeline(ctx, cmds)
	var again []sent
	for k, c := range cmds {
		if c.script && isNoScript(results[k].Err()) {
			again = append(again, c)
			continue
		}
		e.settle(c, results[k], errs)
	}
	if len(again) == 0 {
		return
	}
	if err := e.loadScripts(ctx, again); err != nil {
		for _, c := range again {
			errs[c.job] = err
		}
		return
	}
	results = e.pipeline(ctx, again)
	for k, c := range again {
		e.settle(c, results[k], errs)
	}
}

func (e *BatchEnqueuer) pipeline(ctx context.Context, cmds []sent) []*redis.Cmd {
	pipe := e.rdb.Pipeline()
	results := make([]*redis.Cmd, len(cmds))
	for k, c := range cmds {
		results[k] = pipe.Do(ctx, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	return results
}

// settle maps one reply to its job's error (a job's first error stays).
func (e *BatchEnqueuer) settle(c sent, res *redis.Cmd, errs []error) {
	if errs[c.job] != nil {
		return
	}
	if err := res.Err(); err != nil {
		if !c.script {
			// The recording client thinks the queue registered: a fresh
			// one registers it again when the job is retried.
			e.replaceRecording()
			errs[c.job] = fmt.Errorf("inbox: register the queue (SADD asynq:queues): %w", err)
			return
		}
		errs[c.job] = fmt.Errorf("inbox: enqueue: %w", err)
		return
	}
	if !c.script {
		return
	}
	switch res.Val() {
	case int64(1):
	case int64(0):
		errs[c.job] = fmt.Errorf("inbox: enqueue: %w", tasks.ErrDuplicateTask)
	default:
		e.disable(fmt.Sprintf("asynq's enqueue script replied %#v, want 1 or 0", res.Val()))
		errs[c.job] = fmt.Errorf("inbox: enqueue: unexpected reply %#v from asynq's enqueue script", res.Val())
	}
}

// loadScripts loads the sources of the scripts cmds run.
func (e *BatchEnqueuer) loadScripts(ctx context.Context, cmds []sent) error {
	done := map[string]bool{}
	for _, c := range cmds {
		sha := fmt.Sprint(c.args[1])
		if done[sha] {
			continue
		}
		src, ok := e.scripts.Load(sha)
		if !ok {
			return fmt.Errorf("inbox: Redis lost asynq's enqueue script %s and its source is unknown", sha)
		}
		got, err := e.rdb.ScriptLoad(ctx, src.(string)).Result()
		if err != nil {
			return fmt.Errorf("inbox: load asynq's enqueue script: %w", err)
		}
		if got != sha {
			return fmt.Errorf("inbox: asynq's enqueue script loaded as %s, want %s", got, sha)
		}
		done[sha] = true
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
