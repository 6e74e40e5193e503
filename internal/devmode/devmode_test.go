package devmode_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/devmode"
)

// One demo round on the embedded services: every step reports success and
// everything stops cleanly.
func TestRunOneRoundEmbedded(t *testing.T) {
	t.Parallel()
	var out demoBuf
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := devmode.Run(ctx, devmode.Options{Out: &out, Rounds: 1, Interval: time.Second}); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"embedded Redis (miniredis) listening on 127.0.0.1:",
		"users table ready (50 rows)",
		"scheduler: session-cleanup",
		"[warm] cache:warm_all: 50 of 50 rows",
		"[invalidate] subscriber got: cache.invalidated",
		"[sessions] session:cleanup",
		"[ratelimit] ratelimit:prune",
		"[notify] subscriber received",
		"stopped cleanly",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "failed:") {
		t.Errorf("a demo step failed:\n%s", got)
	}
}
