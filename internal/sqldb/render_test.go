package sqldb_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	ts := time.Date(2024, 1, 15, 10, 30, 0, 5, time.UTC)
	paris := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   any
		want string
		null bool
	}{
		{nil, "", true}, {"x", "x", false}, {[]byte("b"), "b", false}, {int64(-3), "-3", false},
		{1.5, "1.5", false}, {1e6, "1000000", false}, {0.1, "0.1", false}, {float32(0.1), "0.1", false},
		{true, "true", false}, {ts, "2024-01-15T10:30:00.000000005Z", false},
		{time.Date(2024, 1, 15, 11, 30, 0, 0, paris), "2024-01-15T10:30:00Z", false},
	} {
		got, null := sqldb.Format(tc.in)
		if got != tc.want || null != tc.null {
			t.Errorf("Format(%#v) = %q, %v; want %q, %v", tc.in, got, null, tc.want, tc.null)
		}
	}
}

// One table of types, the same values, on every database: each value is
// rendered the same whatever the database and its driver.
func TestRenderByTypeIsTheSameOnEveryDatabase(t *testing.T) {
	t.Parallel()
	schemas := map[string]struct{ create, insert, query string }{
		"postgres": {
			create: `CREATE TABLE vals (id int PRIMARY KEY, ts timestamptz, d date, b boolean, f double precision, r real, bin bytea, t text, n bigint, nul text)`,
			insert: `INSERT INTO vals VALUES (1, '2026-01-02 03:04:05.123456+00', '2026-01-02', true, 1.0, 1.5, 'abc', 'héllo', 42, NULL),
				(2, '2026-01-02 04:04:05+01', '2026-01-02', false, 0.1, 0.1, '', '', -7, NULL)`,
			query: `SELECT ts, d, b, f, r, bin, t, n, nul FROM vals WHERE id >= $1 ORDER BY id`,
		},
		"mysql": {
			create: `CREATE TABLE vals (id int PRIMARY KEY, ts datetime(6), d date, b boolean, f double, r float, bin blob, t text, n bigint, nul text)`,
			insert: `INSERT INTO vals VALUES (1, '2026-01-02 03:04:05.123456', '2026-01-02', true, 1.0, 1.5, 'abc', 'héllo', 42, NULL),
				(2, '2026-01-02 03:04:05', '2026-01-02', false, 0.1, 0.1, '', '', -7, NULL)`,
			// MySQL's BOOLEAN is TINYINT(1): named in booleans (below).
			query: `SELECT ts, d, b, f, r, bin, t, n, nul FROM vals WHERE id >= ? ORDER BY id`,
		},
		"sqlite": {
			create: `CREATE TABLE vals (id integer PRIMARY KEY, ts datetime, d date, b boolean, f real, r real, bin blob, t text, n integer, nul text)`,
			insert: `INSERT INTO vals VALUES (1, '2026-01-02 03:04:05.123456', '2026-01-02', 1, 1.0, 1.5, X'616263', 'héllo', 42, NULL),
				(2, '2026-01-02T03:04:05Z', '2026-01-02', 0, 0.1, 0.1, X'', '', -7, NULL)`,
			query: `SELECT ts, d, b, f, r, bin, t, n, nul FROM vals WHERE id >= ? ORDER BY id`,
		},
	}
	want := [][]string{
		{"2026-01-02T03:04:05.123456Z", "2026-01-02", "true", "1", "1.5", "abc", "héllo", "42", "NULL"},
		{"2026-01-02T03:04:05Z", "2026-01-02", "false", "0.1", "0.1", "", "", "-7", "NULL"},
	}
	for kind, open := range testenv.SQLDatabases(t) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			sc := schemas[kind]
			ctx := context.Background()
			for _, q := range []string{sc.create, sc.insert} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			// With an argument, as the warm queries run (MySQL's binary protocol).
			rows, err := db.QueryContext(ctx, sc.query, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			types, err := rows.ColumnTypes()
			if err != nil {
				t.Fatal(err)
			}
			var booleans []string
			if kind == "mysql" {
				booleans = []string{"b"} // a cache spec's booleans: [b]; PostgreSQL and SQLite know their type
			}
			r := sqldb.NewRenderer(types, booleans...)
			for n := 0; rows.Next(); n++ {
				vals := make([]any, len(types))
				ptrs := make([]any, len(types))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for i, v := range vals {
					got, null := r.Render(i, v)
					if null {
						got = "NULL"
					}
					if got != want[n][i] {
						t.Errorf("row %d column %s (%s, Go %T): %q, want %q", n+1, types[i].Name(), types[i].DatabaseTypeName(), v, got, want[n][i])
					}
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
