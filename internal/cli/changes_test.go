package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

const changesConfig = `
caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email FROM users WHERE id IN (?)"
    changes: {table: users, id: id}
`

func changesConfigFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cachekeeper.yaml")
	writeConfig(t, p, body)
	return p
}

func TestChangesRefusesWhatCannotStream(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	withChanges := changesConfigFile(t, changesConfig)
	without := changesConfigFile(t, strings.Replace(changesConfig, "    changes: {table: users, id: id}\n", "", 1))
	sqlite := "sqlite://" + filepath.Join(t.TempDir(), "x.db")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"changes", "-c", withChanges, "--database-url", sqlite}, "SQLite has no change stream"},
		{[]string{"changes", "status", "-c", withChanges, "--database-url", sqlite}, "SQLite has no change stream"},
		{[]string{"changes", "-c", without, "--database-url", testenv.DefaultPostgresURL}, "no cache has a changes: block"},
		{[]string{"changes", "bogus", "-c", withChanges}, `unknown subcommand "bogus" of 'cachekeeper changes' (subcommands: status)`},
		{[]string{"changes", "-c", withChanges, "--stream", "Bad-Name", "--database-url", testenv.DefaultPostgresURL}, "stream name"},
	}
	for _, c := range cases {
		res := run(t, ctx, nil, append(c.args, "--redis-url", r.URL)...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, c.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and one line containing %q", c.args, res.code, res.stderr, c.want)
		}
	}
	res := run(t, ctx, nil, "config", "check", "-c", withChanges, "--database-url", sqlite, "--redis-url", r.URL)
	if res.code != cli.ExitUsage || !strings.Contains(res.stdout, "FAIL changes: SQLite has no change stream") {
		t.Errorf("config check with sqlite and changes: exit %d stdout %q", res.code, res.stdout)
	}
}

// On the machine's PostgreSQL (wal_level=replica) the stream refuses with
// the setting to change; status reports that no slot exists yet.
func TestChangesOnServerWithoutLogicalWAL(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	var wal string
	if err := db.Get(&wal, "SHOW wal_level"); err != nil {
		t.Fatal(err)
	}
	if wal == "logical" {
		t.Skip("the shared PostgreSQL has wal_level=logical")
	}
	if _, err := db.Exec("CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT)"); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRedis(t)
	ctx := context.Background()
	cfg := changesConfigFile(t, changesConfig)
	res := run(t, ctx, nil, "changes", "-c", cfg, "--database-url", db.Config.URL, "--redis-url", r.URL)
	if res.code != cli.ExitUsage || !strings.Contains(res.stderr, "ALTER SYSTEM SET wal_level = logical") {
		t.Fatalf("changes on wal_level=%s: exit %d stderr %q", wal, res.code, res.stderr)
	}
	res = run(t, ctx, nil, "changes", "status", "-c", cfg, "--database-url", db.Config.URL, "--redis-url", r.URL, "--stream", "ck_status_test")
	if res.code != cli.ExitOK || !strings.Contains(res.stdout, "none yet") || !strings.Contains(res.stdout, "holder") {
		t.Fatalf("changes status: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
	t.Logf("status:\n%s", res.stdout)
}
