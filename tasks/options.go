package tasks

import (
	"time"

	"github.com/hibiken/asynq"
)

// Option changes how one job is enqueued. Options given to a Client method
// override the kind's defaults (queue, retries, timeout).
type Option = asynq.Option

// ProcessIn delays the job by d.
func ProcessIn(d time.Duration) Option { return asynq.ProcessIn(d) }

// ProcessAt runs the job no earlier than t (asynq has one-second resolution).
func ProcessAt(t time.Time) Option { return asynq.ProcessAt(t) }

// Queue sends the job to the named queue instead of the kind's default.
func Queue(name string) Option { return asynq.Queue(name) }

// TaskID sets the job's id; a second job with the same id is refused with
// ErrDuplicateTask while the first is still known to asynq.
func TaskID(id string) Option { return asynq.TaskID(id) }

// Unique refuses an identical job (same kind, payload and queue) for ttl.
func Unique(ttl time.Duration) Option { return asynq.Unique(ttl) }

// MaxRetry sets how many times a failed job is retried before it is archived.
func MaxRetry(n int) Option { return asynq.MaxRetry(n) }

// Timeout bounds one run of the job.
func Timeout(d time.Duration) Option { return asynq.Timeout(d) }

// Retention keeps a finished job's record (and result) for d, so that it can
// be inspected or waited for.
func Retention(d time.Duration) Option { return asynq.Retention(d) }

// ErrDuplicateTask is returned when a job with the same TaskID exists.
var ErrDuplicateTask = asynq.ErrTaskIDConflict

// ErrDuplicateUnique is returned when Unique refused the job.
var ErrDuplicateUnique = asynq.ErrDuplicateTask
