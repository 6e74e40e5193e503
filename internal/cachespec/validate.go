package cachespec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jmoiron/sqlx"
)

// ErrInvalidSpec wraps every rejection of a spec by Validate.
var ErrInvalidSpec = errors.New("invalid cache spec")

// DB is what a spec needs from the database handle: *sqlx.DB and *sqlx.Tx
// both satisfy it.
type DB interface {
	sqlx.QueryerContext
	Rebind(query string) string
	DriverName() string
}

// Validate runs the spec's queries once against db, binding NULL so that no
// row is read, and checks that each returns the id column and every column
// the key and tag templates name. For a spec with an `all` query it also
// settles where the first keyset page starts. The error names the cache.
func (s *Spec) Validate(ctx context.Context, db DB) error {
	q, args, err := sqlx.In(s.byIDs, []any{nil})
	if err != nil {
		return s.invalid("by_ids: %v", err)
	}
	cols, _, err := probe(ctx, db, db.Rebind(q), args...)
	if err != nil {
		return s.invalid("by_ids query failed: %v", err)
	}
	if err := s.checkColumns("by_ids", cols); err != nil {
		return err
	}
	if s.all != "" {
		cols, types, err := probe(ctx, db, db.Rebind(s.all), nil, 0)
		if err != nil {
			return s.invalid("all query failed: %v", err)
		}
		if err := s.checkColumns("all", cols); err != nil {
			return err
		}
		if s.allStart != "" {
			s.start = s.allStart
		} else {
			start, err := firstKey(db.DriverName(), types[indexOf(cols, s.idCol)])
			if err != nil {
				return s.invalid("%v; set caches.%s.all_start to a value below every id", err, s.name)
			}
			s.start = start
		}
	}
	s.validated = true
	return nil
}

func (s *Spec) invalid(format string, a ...any) error {
	return fmt.Errorf("%w: cache %q: %s", ErrInvalidSpec, s.name, fmt.Sprintf(format, a...))
}

func probe(ctx context.Context, db DB, query string, args ...any) ([]string, []string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, oneLine(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, nil, err
	}
	types := make([]string, len(cts))
	for i, ct := range cts {
		types[i] = ct.DatabaseTypeName()
	}
	for rows.Next() {
	}
	return cols, types, oneLine(rows.Err())
}

func oneLine(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

func (s *Spec) checkColumns(query string, cols []string) error {
	have := strings.Join(cols, ", ")
	if indexOf(cols, s.idCol) < 0 {
		return s.invalid("the %s query does not return the id column %q (it returns %s); select it or set id_column", query, s.idCol, have)
	}
	for _, p := range s.key.Placeholders() {
		if indexOf(cols, p) < 0 {
			return s.invalid("key template %q names column %q but the %s query returns %s", s.key, p, query, have)
		}
	}
	for _, b := range s.booleans {
		if indexOf(cols, b) < 0 {
			return s.invalid("booleans names column %q but the %s query returns %s", b, query, have)
		}
	}
	for _, t := range s.tags {
		for _, p := range t.Placeholders() {
			if indexOf(cols, p) < 0 {
				return s.invalid("tag template %q names column %q but the %s query returns %s", t, p, query, have)
			}
		}
	}
	return nil
}

func indexOf(cols []string, name string) int {
	for i, c := range cols {
		if c == name {
			return i
		}
	}
	return -1
}

// firstKey returns a value below every id of a column of the given database
// type, for the first keyset page ("WHERE id > ?"). A row whose id is exactly
// that value (the type's minimum) would be missed.
func firstKey(driver, dbType string) (any, error) {
	t := strings.ToUpper(strings.TrimSpace(dbType))
	if driver == "sqlite" || driver == "sqlite3" {
		// SQLite orders every integer below every text value.
		return int64(math.MinInt64), nil
	}
	switch {
	case t == "INT2" || (t == "SMALLINT" && driver == "pgx"):
		return int64(math.MinInt16), nil
	case t == "INT4" || ((t == "INTEGER" || t == "INT") && driver == "pgx"):
		return int64(math.MinInt32), nil
	case strings.Contains(t, "INT") || t == "SERIAL" || t == "BIGSERIAL":
		return int64(math.MinInt64), nil
	case strings.Contains(t, "CHAR") || strings.Contains(t, "TEXT") || t == "NAME":
		return "", nil
	case t == "UUID":
		return "00000000-0000-0000-0000-000000000000", nil
	}
	return nil, fmt.Errorf("cannot tell where the first keyset page starts for an id column of type %q", dbType)
}
