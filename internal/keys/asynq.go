package keys

// asynq's own key layout (hibiken/asynq internal/base), for the few places
// cachekeeper reads or repairs the queue directly (recovery of dead
// workers' jobs). Every key of one queue shares the hash tag {queue}, so a
// script over them runs on one cluster node.

// AsynqWorkers is the sorted set of every server's workers hash key, scored
// by the hash's expiry (unix seconds); each hash maps the id of a running
// task to its worker info and is rewritten by the server's heartbeat.
const AsynqWorkers = AsynqPrefix + "workers"

// AsynqServers is the sorted set of every server's info key, scored by expiry.
const AsynqServers = AsynqPrefix + "servers"

func asynqQueue(queue string) string { return AsynqPrefix + "{" + queue + "}:" }

// AsynqActive is the list of a queue's active task ids.
func AsynqActive(queue string) string { return asynqQueue(queue) + "active" }

// AsynqLease is the sorted set of a queue's active task ids scored by lease
// expiry (unix seconds).
func AsynqLease(queue string) string { return asynqQueue(queue) + "lease" }

// AsynqPending is the list of a queue's pending task ids.
func AsynqPending(queue string) string { return asynqQueue(queue) + "pending" }

// AsynqTaskPrefix starts the hash key of every task of a queue (prefix + id).
func AsynqTaskPrefix(queue string) string { return asynqQueue(queue) + "t:" }

// AsynqQueues is the set of every queue's name. asynq adds a queue to it on
// the queue's first enqueue; its Inspector lists (and reports on) only the
// queues in it.
const AsynqQueues = AsynqPrefix + "queues"

// AsynqPaused is the key whose presence pauses a queue (asynq's
// Inspector.PauseQueue sets it, UnpauseQueue deletes it).
func AsynqPaused(queue string) string { return asynqQueue(queue) + "paused" }
