// Package faults holds cachekeeper's fault suite: each test builds the
// cachekeeper binary, starts real worker processes against private Redis
// servers (a single server, a Redis Cluster of three masters and three
// replicas, a Sentinel group) and the shared PostgreSQL, injects a fault
// with real signals (SIGKILL, SIGTERM) or a cut TCP proxy, and checks what
// docs/reliability.md promises, printing the recovery times it measured.
// Every wait is bounded. Run it with `make test-faults`.
package faults
