// Package scheduler enqueues periodic jobs declared in the configuration's
// schedule section, from any number of replicas, without leader election and
// without running a tick twice.
//
// # One tick, one task, many replicas
//
// Every replica computes the same tick times (cron expressions in the
// entry's time zone; "@every" intervals aligned to the Unix epoch, not to the
// moment a process started) and enqueues each tick with a task id derived
// from the entry and the tick:
//
//	schedule:<name>:<series>:<unix seconds of the tick>
//
// where series is a short hash of the entry's kind, canonical arguments and
// queue, so a changed entry starts a new series. asynq refuses a second task
// with an id whose record still exists (asynq.ErrTaskIDConflict); the
// replicas that lose that race count a duplicate and move on. The task is
// enqueued with asynq.Retention of twice the entry's interval (at least ten
// minutes, at most a day), so that a replica that is late by seconds still
// finds the record after a fast worker has completed the task.
//
// # Why the id changes with every tick
//
// The naive approach, one fixed task id per entry, has a trap (hibiken/asynq
// #842): once a run of the job fails for good, asynq keeps the archived task,
// with that id, for up to 90 days, and every later enqueue of the entry is
// refused as a conflict, so the job silently stops running. With per-tick
// ids an archived task only ever blocks its own tick, which is exactly the
// tick that must not run twice.
//
// # Missed ticks
//
// Ticks that passed while every replica was down are skipped, unless the
// entry says catch_up: one, in which case a starting replica enqueues the
// most recent missed tick (with that tick's id, so replicas starting
// together still make one task). The latest enqueued tick of each entry is
// recorded in Redis (keys.Keys.SchedulerLastTick) for this. A replica that
// wakes up late (a pause, a slow Redis) enqueues the latest due tick only.
//
// A replica whose enqueue fails (Redis unreachable) retries the same tick
// with backoff until the entry's next tick is due.
//
// # Reload
//
// Reload validates a whole new entry list first; a bad list is refused and
// the running entries stay. Accepted changes take effect at the next tick.
// While a changed entry is rolled out to replicas one by one, old and new
// replicas use different series and can both enqueue the same tick.
package scheduler
