package keys

// SchedulerLastTick is the hash, field entry name, value Unix seconds, that
// records the latest tick the scheduler enqueued for each entry. A replica
// starting up reads it to find ticks missed while every replica was down.
func (k Keys) SchedulerLastTick() string { return k.prefix + "scheduler:last_tick" }
