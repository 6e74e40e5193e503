package cachespec

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
)

// ErrNotValidated is returned by reads of a spec that Validate has not checked.
var ErrNotValidated = errors.New("cache spec not validated against the database")

// Batch is what one query read, ready for one fenced write.
type Batch struct {
	// Entries holds a whole hash per row found, then a delete entry per
	// requested id whose row is gone (Gone of them, at the end).
	Entries []fence.Entry
	// IDs holds the id of each entry, in the same order.
	IDs []string
	// Gone counts the delete entries.
	Gone int
	// Tags maps a rendered tag ("org:7") to the keys that join it.
	Tags map[string][]string
	// Rows counts rows read.
	Rows int
	// Unkeyed counts rows skipped because a column of the key is NULL.
	Unkeyed int
	// Unmapped lists requested ids with no row whose key cannot be derived
	// from the id alone (the key template names other columns), so nothing
	// could be deleted for them.
	Unmapped []string
	// Invalid lists requested ids the database rejected as values of the id
	// column (for example "abc" for an integer id); they are skipped.
	Invalid []string
	// Last is the id of the last row (the keyset position after this page).
	Last any
}

// ReadIDs reads the rows of ids with one by_ids query. Ids should be unique
// (see Dedupe). Ids with no row get a delete entry when their key is known.
// When PostgreSQL rejects an id as a value of the id column, the ids are
// split and read again so that the bad ones are skipped (Batch.Invalid)
// instead of failing the whole batch.
func (s *Spec) ReadIDs(ctx context.Context, db DB, ids []string) (*Batch, error) {
	if !s.validated {
		return nil, fmt.Errorf("cache %q: %w", s.name, ErrNotValidated)
	}
	b := &Batch{}
	if len(ids) == 0 {
		return b, nil
	}
	found := make(map[string]struct{}, len(ids))
	if err := s.readIDs(ctx, db, ids, b, found); err != nil {
		return nil, err
	}
	invalid := make(map[string]struct{}, len(b.Invalid))
	for _, id := range b.Invalid {
		invalid[id] = struct{}{}
	}
	for _, id := range ids {
		if _, ok := found[id]; ok {
			continue
		}
		if _, ok := invalid[id]; ok {
			continue
		}
		key, ok := s.KeyForID(id)
		if !ok {
			b.Unmapped = append(b.Unmapped, id)
			continue
		}
		b.Entries = append(b.Entries, fence.Entry{Key: key})
		b.IDs = append(b.IDs, id)
		b.Gone++
	}
	return b, nil
}

func (s *Spec) readIDs(ctx context.Context, db DB, ids []string, b *Batch, found map[string]struct{}) error {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q, qargs, err := sqlx.In(s.byIDs, args)
	if err != nil {
		return fmt.Errorf("cache %q: expand by_ids: %w", s.name, err)
	}
	part := &Batch{}
	rows, err := db.QueryContext(ctx, db.Rebind(q), qargs...)
	if err == nil {
		err = s.collect(rows, part)
	}
	if err == nil {
		b.merge(part, found)
		return nil
	}
	if !isDataError(err) || ctx.Err() != nil {
		return fmt.Errorf("cache %q: by_ids query: %w", s.name, err)
	}
	if len(ids) == 1 {
		b.Invalid = append(b.Invalid, ids[0])
		return nil
	}
	half := len(ids) / 2
	if err := s.readIDs(ctx, db, ids[:half], b, found); err != nil {
		return err
	}
	return s.readIDs(ctx, db, ids[half:], b, found)
}

// merge appends what part read to b and notes the ids found.
func (b *Batch) merge(part *Batch, found map[string]struct{}) {
	b.Entries = append(b.Entries, part.Entries...)
	b.IDs = append(b.IDs, part.IDs...)
	b.Rows += part.Rows
	b.Unkeyed += part.Unkeyed
	for _, id := range part.IDs {
		found[id] = struct{}{}
	}
	for tag, keys := range part.Tags {
		if b.Tags == nil {
			b.Tags = map[string][]string{}
		}
		b.Tags[tag] = append(b.Tags[tag], keys...)
	}
}

// isDataError reports whether PostgreSQL refused a bound value (SQLSTATE
// class 22, data exception), such as a non-numeric id for an integer column.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22"
}

// Start returns the value the first keyset page starts after.
func (s *Spec) Start() any { return s.start }

// ReadPage reads one keyset page of the all query: up to limit rows whose id
// is greater than after. Batch.Last is the position for the next page; a
// page shorter than limit is the last one.
func (s *Spec) ReadPage(ctx context.Context, db DB, after any, limit int) (*Batch, error) {
	if !s.validated {
		return nil, fmt.Errorf("cache %q: %w", s.name, ErrNotValidated)
	}
	if s.all == "" {
		return nil, fmt.Errorf("cache %q has no `all` query; add one to warm the whole table", s.name)
	}
	rows, err := db.QueryContext(ctx, db.Rebind(s.all), after, limit)
	if err != nil {
		return nil, fmt.Errorf("cache %q: all query: %w", s.name, err)
	}
	b := &Batch{Entries: make([]fence.Entry, 0, limit), IDs: make([]string, 0, limit)}
	if err := s.collect(rows, b); err != nil {
		return nil, fmt.Errorf("cache %q: all query: %w", s.name, err)
	}
	return b, nil
}

// collect turns rows into entries and closes rows.
func (s *Spec) collect(rows *sql.Rows, b *Batch) error {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	render := sqldb.NewRenderer(types, s.booleans...)
	idIdx := indexOf(cols, s.idCol)
	if idIdx < 0 {
		return fmt.Errorf("query returned no %q column (it returns %v)", s.idCol, cols)
	}
	index := make(map[string]int, len(cols))
	for i, c := range cols {
		index[c] = i
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	strs := make([]string, len(cols))
	null := make([]bool, len(cols))
	lookup := func(name string) (string, bool) {
		i, ok := index[name]
		if !ok || null[i] {
			return "", false
		}
		return strs[i], true
	}
	for rows.Next() {
		for i := range vals {
			vals[i] = nil
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		b.Rows++
		n := 0
		for i, v := range vals {
			strs[i], null[i] = render.Render(i, v)
			if !null[i] {
				n++
			}
		}
		if !null[idIdx] {
			b.Last = lastValue(vals[idIdx])
		}
		key, err := s.key.Render(lookup)
		if err != nil {
			b.Unkeyed++
			continue
		}
		fields := make([]string, 0, 2*n)
		for i, c := range cols {
			if !null[i] {
				fields = append(fields, c, strs[i])
			}
		}
		b.Entries = append(b.Entries, fence.Entry{Key: key, Fields: fields, TTL: s.TTL()})
		b.IDs = append(b.IDs, strs[idIdx])
		for _, t := range s.tags {
			tag, err := t.Render(lookup)
			if err != nil {
				continue // a NULL tag column: the row does not join this tag
			}
			if b.Tags == nil {
				b.Tags = map[string][]string{}
			}
			b.Tags[tag] = append(b.Tags[tag], key)
		}
	}
	return rows.Err()
}

// lastValue keeps an id as the driver returned it, so that the next keyset
// page binds a value of the column's own type; bytes become a string.
func lastValue(v any) any {
	if bs, ok := v.([]byte); ok {
		return string(bs)
	}
	return v
}

// Count returns the number of rows the all query yields from the start:
// SELECT COUNT(*) over it as a subquery. Bound it with ctx: on a large table
// it scans the index.
func (s *Spec) Count(ctx context.Context, db DB) (int64, error) {
	if !s.validated || s.all == "" {
		return 0, fmt.Errorf("cache %q: no validated all query", s.name)
	}
	q := db.Rebind("SELECT COUNT(*) FROM (" + s.all + ") AS cachekeeper_count")
	var n int64
	rows, err := db.QueryContext(ctx, q, s.start, int64(math.MaxInt64))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Err()
}
