package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// `functions print` prints the library FUNCTION LOAD takes; `functions load`
// loads it, then keeps it; the stampede bench refuses a missing PostgreSQL
// URL with a usage error.
func TestFunctionsPrintAndLoad(t *testing.T) {
	t.Parallel()
	var out, errb lockedBuf
	if code := cli.Run(context.Background(), []string{"functions", "print"}, cli.IO{Stdout: &out, Stderr: &errb}); code != cli.ExitOK {
		t.Fatalf("print: exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "#!lua name="+redisx.LibraryName) || !strings.Contains(out.String(), "'ck1_fill'") {
		t.Fatalf("print: %.200q", out.String())
	}
	r := testenv.NewRedis(t)
	for _, want := range []string{"loaded", "kept"} {
		var out, errb lockedBuf
		code := cli.Run(context.Background(), []string{"functions", "load", "-o", "json", "--redis-url", r.URL}, cli.IO{Stdout: &out, Stderr: &errb})
		if code != cli.ExitOK {
			t.Fatalf("load: exit %d: %s", code, errb.String())
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out.String()), &res); err != nil || res["action"] != want {
			t.Fatalf("load: %q (%v), want action %s", out.String(), err, want)
		}
	}
	if v, err := r.Client.FCallRO(context.Background(), "ck1_version", nil).Int64Slice(); err != nil || v[1] != redisx.LibraryRevision {
		t.Fatalf("ck1_version = %v, %v", v, err)
	}
	var errs lockedBuf
	code := cli.Run(context.Background(), []string{"bench", "stampede", "--redis-url", r.URL}, cli.IO{Stdout: &out, Stderr: &errs})
	if code != cli.ExitUsage || !strings.Contains(errs.String(), "--database-url") {
		t.Fatalf("bench stampede without a database: exit %d, stderr %q", code, errs.String())
	}
}
