// Package tasks defines every job kind cachekeeper runs, its payload, and the
// Client that application code uses to enqueue jobs.
//
// Each kind has a stable string name (for example "cache:invalidate"), a payload
// struct with snake_case JSON tags and a Validate method, a default queue, a
// default retry budget and a default timeout. A payload is validated before it
// is sent: a bad argument returns an error and nothing reaches Redis.
package tasks
