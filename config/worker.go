package config

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// WorkerConfig shapes the worker process.
type WorkerConfig struct {
	// Concurrency is the number of jobs run at once in this process, spread
	// over Servers asynq servers.
	Concurrency int `yaml:"concurrency"`
	// Servers is the number of asynq servers in the process. asynq dequeues
	// with one goroutine per server, one round trip per job, so more servers
	// move more jobs per second until the CPU is the limit. Default 4, from
	// `cachekeeper bench queue` on a 2-core machine with Redis on the same
	// cores: 4 servers processed 1.04x to 1.46x the no-op jobs per second of
	// one bare asynq server (median 1.23x over 10 runs; bare asynq with 4
	// servers did about the same in the same conditions, 1.2x to 1.5x);
	// 3, 6 or 8 servers were not told apart from 4 within the machine's
	// noise, and 2 did less. Each server polls each idle queue about once a
	// second (TaskCheckInterval), about 9 Redis commands per second per
	// server with the default three queues, so more servers cost Redis more
	// when idle.
	Servers int `yaml:"servers"`
	// Queues maps queue name to weight (critical=6, default=3, low=1).
	Queues map[string]int `yaml:"queues"`
	// StrictPriority drains higher-weight queues first.
	StrictPriority bool `yaml:"strict_priority"`
	// ShutdownTimeout is how long running jobs get to finish on stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// TaskCheckInterval is how often an idle server polls for new jobs.
	TaskCheckInterval time.Duration `yaml:"task_check_interval"`
	// EmptyQueueBackoff is how long a busy server skips a queue it has just
	// found empty instead of asking Redis again on every dequeue (asynq asks
	// every queue in turn until one hands out a job, a round trip each).
	// A job arriving on a skipped queue waits at most this much more while
	// the server is busy with other queues; weights are unchanged. Capped at
	// half of TaskCheckInterval; 0 turns it off. Default 10ms.
	EmptyQueueBackoff time.Duration `yaml:"empty_queue_backoff"`
	// IdleWait makes idle servers wait for work instead of polling: once
	// every queue was found empty, a server waits until one receives a job
	// (learnt by a blocking BLMOVE per queue, on connections of their own)
	// or IdleWait passes, and polls every 5ms while it is on, so a job is
	// picked up within milliseconds and an idle worker sends a few Redis
	// commands a second. The forwarder of scheduled and retry jobs then
	// reads each set's earliest due time (about every 750ms and 5s) and runs
	// asynq's script only when a job is due. 0 turns it off: the servers poll
	// every task_check_interval, as asynq does. At most 10s.
	IdleWait time.Duration `yaml:"idle_wait"`
	// RecoverAfter is how long an active job's lease may go without being
	// extended, while no live worker lists it, before any worker hands it
	// back to its queue (see worker/recover.go). asynq extends the lease of a
	// running job every 5s, so a live worker's lease is never more than about
	// 6s old; a worker killed with SIGKILL stops extending at once. Jobs
	// active with no lease at all (asynq #1051/#1144) are handed back on the
	// first pass when no live worker lists them. A job is re-run within
	// RecoverAfter plus the 2s pass interval of the kill. Default 10s (two
	// missed heartbeats); at least 8s; 0 leaves recovery to asynq alone
	// (30s lease plus its one-minute recoverer pass).
	RecoverAfter time.Duration `yaml:"recover_after"`
	// DelayedTaskCheckInterval is how often one server of the process moves
	// due scheduled and retry jobs to their queues (asynq's forwarder; the
	// others keep asynq's 5s). A job due at T is pending by T plus this and
	// then starts on the next poll. Each check is two script calls per queue:
	// with three queues and 250ms, 24 calls per second per worker process.
	// Default 250ms.
	DelayedTaskCheckInterval time.Duration `yaml:"delayed_task_check_interval"`
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string `yaml:"metrics_addr"`
	// UI serves asynqmon's web UI for the queues under /ui/ on MetricsAddr.
	// Off by default: anyone who reaches that port can delete, archive and
	// re-run jobs through it (see UIReadOnly).
	UI bool `yaml:"ui"`
	// UIReadOnly limits the UI to viewing queues and jobs: requests that
	// would change them are refused.
	UIReadOnly bool `yaml:"ui_read_only"`
	// UIAuthFile, when set, holds the UI's login as "user:password" on its
	// first line (or set CACHEKEEPER_UI_USER and CACHEKEEPER_UI_PASSWORD).
	// A UI that can change jobs, served on a non-loopback address, needs a
	// login: the worker refuses to start otherwise.
	UIAuthFile string `yaml:"ui_auth_file,omitempty"`
	// FastLane gives one latency-sensitive queue (critical by default) its
	// own server that picks a job up within about a millisecond of its
	// enqueue, while the Servers above keep polling every queue, by weight.
	FastLane FastLaneConfig `yaml:"fast_lane"`
}

// FastLaneConfig shapes the worker's fast lane: one extra asynq server that
// serves only Queue. When its queue is empty, its dequeue waits on Redis
// (BLMOVE of the queue's pending list onto itself: a blocking peek that
// leaves the list as it was) for up to Wait instead of sleeping, so a new job
// is picked up at once, and an idle lane costs Redis about two commands per
// Wait. The Servers keep serving Queue with its weight as well, so the lane
// adds capacity and never takes the queue away from them.
//
// asynq polls an empty queue every TaskCheckInterval (about once a second
// by default, for every queue of every server): that is why a plain server
// picks an invalidation up after 0.5 to 1.5 s. Measured with
// `cachekeeper bench queue` on a 2-core machine (300 single jobs, 10 runs):
// enqueue to handler start p50 0.7 to 0.9 ms, p99 1.1 to 2.2 ms, against
// p50 0.8 to 1.0 s and p99 1.4 to 1.5 s for asynq with default settings; the
// idle worker (4 servers polling three queues, the lane waiting, the inbox
// bridge) costs Redis 37 to 46 commands per second, commands inside Lua
// scripts included. Polling the lane's queue every few milliseconds instead
// would cost hundreds.
type FastLaneConfig struct {
	// Queue is the queue the lane serves; it must be one of worker.queues.
	// Empty disables the lane. Default "critical" (invalidations and session
	// revocations).
	Queue string `yaml:"queue"`
	// Concurrency is the number of the lane's jobs run at once, in addition
	// to worker.concurrency. Default 2.
	Concurrency int `yaml:"concurrency"`
	// Wait is how long an idle dequeue waits on Redis for a job before asynq
	// polls again. Longer costs fewer commands and delays shutdown by
	// nothing (stopping the worker ends the wait at once), but a job handed
	// out after a wait starts with that much less of its first 30s lease,
	// so keep it to a few seconds at most. 0 turns the wait off: the lane
	// then polls every TaskCheckInterval. Default 1s.
	Wait time.Duration `yaml:"wait"`
	// TaskCheckInterval is the lane's asynq poll interval when a wait ends
	// without a job (or when the wait is off or the Redis server is older
	// than 6.2 and lacks BLMOVE). Default 5ms.
	TaskCheckInterval time.Duration `yaml:"task_check_interval"`
}

func (w *WorkerConfig) setDefaults() {
	w.Concurrency = 20
	w.Servers = 4
	w.Queues = map[string]int{"critical": 6, "default": 3, "low": 1}
	w.ShutdownTimeout = 30 * time.Second
	w.TaskCheckInterval = time.Second
	w.EmptyQueueBackoff = 10 * time.Millisecond
	w.IdleWait = 10 * time.Second
	w.RecoverAfter = 10 * time.Second
	w.DelayedTaskCheckInterval = 250 * time.Millisecond
	w.MetricsAddr = ":9090"
	w.FastLane = FastLaneConfig{Queue: "critical", Concurrency: 2, Wait: time.Second, TaskCheckInterval: 5 * time.Millisecond}
}

func (w *WorkerConfig) validate() error {
	if w.Concurrency < 1 {
		return fmt.Errorf("worker.concurrency must be at least 1, got %d", w.Concurrency)
	}
	if w.Servers < 1 || w.Servers > 64 {
		return fmt.Errorf("worker.servers must be between 1 and 64, got %d", w.Servers)
	}
	if w.Servers > w.Concurrency {
		return fmt.Errorf("worker.servers (%d) must not exceed worker.concurrency (%d): each server needs at least one slot", w.Servers, w.Concurrency)
	}
	if len(w.Queues) == 0 {
		return fmt.Errorf("worker.queues must name at least one queue, e.g. {critical: 6, default: 3, low: 1}")
	}
	for q, weight := range w.Queues {
		if q == "" {
			return fmt.Errorf("worker.queues has an empty queue name")
		}
		if weight < 1 {
			return fmt.Errorf("worker.queues.%s weight must be at least 1, got %d", q, weight)
		}
	}
	if err := positive("worker.shutdown_timeout", w.ShutdownTimeout); err != nil {
		return err
	}
	if w.TaskCheckInterval < time.Millisecond {
		return fmt.Errorf("worker.task_check_interval must be at least 1ms, got %s", w.TaskCheckInterval)
	}
	if w.IdleWait < 0 || w.IdleWait > 10*time.Second {
		return fmt.Errorf("worker.idle_wait must be between 0 (off) and 10s, got %s", w.IdleWait)
	}
	if w.EmptyQueueBackoff < 0 {
		return fmt.Errorf("worker.empty_queue_backoff must be 0 (off) or a positive duration such as 10ms, got %s", w.EmptyQueueBackoff)
	}
	if w.RecoverAfter != 0 && w.RecoverAfter < 8*time.Second {
		return fmt.Errorf("worker.recover_after must be 0 (leave recovery to asynq) or at least 8s (asynq extends a live job's lease every 5s), got %s", w.RecoverAfter)
	}
	if w.DelayedTaskCheckInterval < 10*time.Millisecond || w.DelayedTaskCheckInterval > time.Minute {
		return fmt.Errorf("worker.delayed_task_check_interval must be between 10ms and 1m, got %s", w.DelayedTaskCheckInterval)
	}
	if w.UI && w.MetricsAddr == "" {
		return fmt.Errorf("worker.ui needs worker.metrics_addr, the server the UI is served on under /ui/: set worker.metrics_addr (e.g. \":9090\"), or turn worker.ui off")
	}
	return w.FastLane.validate(w.Queues)
}

func (f *FastLaneConfig) validate(queues map[string]int) error {
	if f.Queue == "" {
		return nil
	}
	if _, ok := queues[f.Queue]; !ok {
		return fmt.Errorf("worker.fast_lane.queue %q is not one of worker.queues (%s): add it there, or set worker.fast_lane.queue to \"\" to turn the fast lane off", f.Queue, queueNames(queues))
	}
	if f.Concurrency < 1 {
		return fmt.Errorf("worker.fast_lane.concurrency must be at least 1, got %d", f.Concurrency)
	}
	if f.Wait < 0 {
		return fmt.Errorf("worker.fast_lane.wait must be 0 (off) or a positive duration such as 1s, got %s", f.Wait)
	}
	if f.Wait > 0 && (f.Wait < 10*time.Millisecond || f.Wait > 10*time.Second) {
		return fmt.Errorf("worker.fast_lane.wait must be between 10ms and 10s (it shortens a job's first 30s lease), or 0 to poll instead; got %s", f.Wait)
	}
	if f.TaskCheckInterval < time.Millisecond {
		return fmt.Errorf("worker.fast_lane.task_check_interval must be at least 1ms, got %s", f.TaskCheckInterval)
	}
	return nil
}

// queueNames lists the queues of a worker.queues map, sorted, for messages.
func queueNames(queues map[string]int) string {
	names := make([]string, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
