// Package worker runs cachekeeper's jobs: it assembles asynq servers with
// weighted queues, one generic adapter that decodes and validates typed
// payloads, middleware for logging, panic recovery and Prometheus metrics, and
// the handler of each job family (one file per family).
//
// Handlers are idempotent: asynq delivers at least once, and after a Redis
// failover a finished job may run again.
package worker
