// Package testenv gives tests their own services: a private redis-server on a
// unix socket per call, a PostgreSQL schema, a MySQL database or an SQLite
// file per test. Nothing is shared, so tests can run in parallel, and nothing
// is flushed on a server the test did not start.
//
// Fallbacks: without redis-server on PATH, CACHEKEEPER_TEST_REDIS_URL (given
// its own DB number per test is the caller's business) and then miniredis are
// used, each with a logged note. With CI=true a missing redis-server or an
// unreachable PostgreSQL fails the test instead.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// CI reports whether missing services are failures (CI=true) rather than
// reasons to fall back or skip.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// unavailable fails the test under CI and skips it elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true and "+format, args...)
	}
	t.Skipf(format, args...)
}
