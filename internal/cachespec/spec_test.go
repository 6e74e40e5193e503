package cachespec_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func userSpec() config.CacheSpec {
	cs := config.DemoCaches()["user"]
	cs.Tags = []string{"org:{org_id}"}
	cs.ByIDs = "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?)"
	cs.All = "SELECT id, email, full_name AS name, org_id FROM users WHERE id > ? ORDER BY id LIMIT ?"
	return cs
}

// seed creates users(id, email, full_name, org_id) with ids 1..n (and -5 on
// request); user 2 has a NULL full_name and no org.
func seed(t *testing.T, db *testenv.DB, n int, negative bool) {
	t.Helper()
	ddl := map[string]string{
		"postgres": "CREATE TABLE users (id INT PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, org_id BIGINT)",
		"sqlite":   "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, org_id INTEGER)",
		"mysql":    "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL, full_name VARCHAR(200) NULL, org_id BIGINT NULL)",
	}[db.Kind]
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	ins := db.Rebind("INSERT INTO users (id, email, full_name, org_id) VALUES (?, ?, ?, ?)")
	ids := []int{}
	if negative {
		ids = append(ids, -5)
	}
	for i := 1; i <= n; i++ {
		ids = append(ids, i)
	}
	for _, i := range ids {
		var name, org any = fmt.Sprintf("User %d", i), 7
		if i == 2 {
			name, org = nil, nil
		}
		if _, err := db.Exec(ins, i, fmt.Sprintf("u%d@example.com", i), name, org); err != nil {
			t.Fatal(err)
		}
	}
}

func compile(t *testing.T, db *testenv.DB, cs config.CacheSpec) *cachespec.Spec {
	t.Helper()
	s, err := cachespec.Compile("user", cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(context.Background(), db.DB); err != nil {
		t.Fatal(err)
	}
	return s
}

func fieldMap(fields []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i]] = fields[i+1]
	}
	return m
}

func TestReadIDsOnEveryDatabase(t *testing.T) {
	t.Parallel()
	for kind, open := range testenv.SQLDatabases(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			seed(t, db, 3, false)
			s := compile(t, db, userSpec())
			b, err := s.ReadIDs(context.Background(), db.DB, []string{"1", "2", "404"})
			if err != nil {
				t.Fatal(err)
			}
			if b.Rows != 2 || len(b.Entries) != 3 || b.Gone != 1 {
				t.Fatalf("rows=%d entries=%d gone=%d, want 2 rows, 3 entries, 1 gone", b.Rows, len(b.Entries), b.Gone)
			}
			byKey := map[string]map[string]string{}
			for _, e := range b.Entries {
				byKey[e.Key] = fieldMap(e.Fields)
				if len(e.Fields) > 0 && (e.TTL <= 0 || e.TTL > time.Hour) {
					t.Errorf("%s TTL = %s", e.Key, e.TTL)
				}
			}
			want1 := map[string]string{"id": "1", "email": "u1@example.com", "name": "User 1", "org_id": "7"}
			if !reflect.DeepEqual(byKey["user:1"], want1) {
				t.Errorf("user:1 = %v, want %v", byKey["user:1"], want1)
			}
			want2 := map[string]string{"id": "2", "email": "u2@example.com"} // NULL name and org left out
			if !reflect.DeepEqual(byKey["user:2"], want2) {
				t.Errorf("user:2 = %v, want %v", byKey["user:2"], want2)
			}
			if f, ok := byKey["user:404"]; !ok || len(f) != 0 {
				t.Errorf("user:404 should be a delete entry, got %v (present %v)", f, ok)
			}
			if got := b.Tags["org:7"]; !reflect.DeepEqual(got, []string{"user:1"}) {
				t.Errorf("tag org:7 members = %v, want [user:1] (user 2 has no org)", got)
			}
		})
	}
}

func TestReadPageWalksTheTableFromBelowEveryID(t *testing.T) {
	t.Parallel()
	for kind, open := range testenv.SQLDatabases(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			seed(t, db, 7, true) // ids -5, 1..7
			s := compile(t, db, userSpec())
			var got []string
			after := s.Start()
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("keyset pagination does not end")
				}
				b, err := s.ReadPage(context.Background(), db.DB, after, 3)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, b.IDs...)
				if b.Rows < 3 {
					break
				}
				after = b.Last
			}
			want := []string{"-5", "1", "2", "3", "4", "5", "6", "7"}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ids = %v, want %v", got, want)
			}
			n, err := s.Count(context.Background(), db.DB)
			if err != nil || n != 8 {
				t.Fatalf("Count = %d, %v; want 8", n, err)
			}
		})
	}
}

func TestBadIDIsSkippedNotFatal(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	seed(t, db, 3, false)
	s := compile(t, db, userSpec())
	b, err := s.ReadIDs(context.Background(), db.DB, []string{"1", "abc", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Invalid, []string{"abc"}) || b.Rows != 2 || b.Gone != 0 {
		t.Fatalf("invalid=%v rows=%d gone=%d; want abc skipped and rows 1 and 3 read", b.Invalid, b.Rows, b.Gone)
	}
}

func TestValidateRejectsSpecsNamingTheCache(t *testing.T) {
	t.Parallel()
	db := testenv.SQLite(t)
	seed(t, db, 1, false)
	cases := []struct {
		name string
		edit func(*config.CacheSpec)
		want string
	}{
		{"key column missing", func(c *config.CacheSpec) { c.Key = "user:{uid}" }, `names column "uid"`},
		{"tag column missing", func(c *config.CacheSpec) { c.Tags = []string{"team:{team_id}"} }, `names column "team_id"`},
		{"boolean column missing", func(c *config.CacheSpec) { c.Booleans = []string{"active"} }, `booleans names column "active"`},
		{"query fails", func(c *config.CacheSpec) { c.ByIDs = "SELECT id FROM nosuchtable WHERE id IN (?)" }, "by_ids query failed"},
		{"all lacks id", func(c *config.CacheSpec) {
			c.All = "SELECT email, full_name AS name, org_id FROM users WHERE id > ? ORDER BY id LIMIT ?"
		}, `does not return the id column "id"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := userSpec()
			tc.edit(&cs)
			s, err := cachespec.Compile("user", cs)
			if err == nil {
				err = s.Validate(context.Background(), db.DB)
			}
			if err == nil || !strings.Contains(err.Error(), `cache "user"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one naming cache \"user\" and saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans several lines: %q", err)
			}
		})
	}
	s, _ := cachespec.Compile("user", userSpec())
	if _, err := s.ReadIDs(context.Background(), db.DB, []string{"1"}); !errors.Is(err, cachespec.ErrNotValidated) {
		t.Fatalf("read before Validate: %v", err)
	}
}

func TestDedupeAndChunks(t *testing.T) {
	t.Parallel()
	ids := cachespec.Dedupe([]string{"3", "1", "3", "2", "1"})
	if !reflect.DeepEqual(ids, []string{"3", "1", "2"}) {
		t.Fatalf("Dedupe = %v", ids)
	}
	ch := cachespec.Chunks([]string{"a", "b", "c", "d", "e"}, 2)
	if len(ch) != 3 || len(ch[2]) != 1 || ch[0][0] != "a" {
		t.Fatalf("Chunks = %v", ch)
	}
	if len(cachespec.Chunks(nil, 500)) != 0 {
		t.Fatal("Chunks(nil) not empty")
	}
}

func TestTTLJitterOnlyShortens(t *testing.T) {
	t.Parallel()
	cs := userSpec()
	cs.TTLJitter = 0.1
	s, err := cachespec.Compile("user", cs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for range 200 {
		ttl := s.TTL()
		if ttl > time.Hour || ttl < 54*time.Minute {
			t.Fatalf("TTL %s outside [54m, 1h]", ttl)
		}
		seen[ttl] = true
	}
	if len(seen) < 10 {
		t.Fatalf("jitter produced only %d distinct TTLs", len(seen))
	}
}
