package sqldb

import (
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Column values are written to Redis by their SQL type, the same whatever
// the database and its driver:
//
//	timestamps, datetimes   RFC 3339 in UTC with the fraction it has: 2026-01-02T03:04:05Z
//	dates                   2026-01-02
//	booleans                true / false (MySQL has no boolean type: BOOLEAN is
//	                        TINYINT(1), reported as TINYINT; the columns named
//	                        in a cache spec's booleans: list are rendered as
//	                        booleans whatever their type)
//	floating point          the shortest decimal that reads back as the same
//	                        float: 1, 1.5, 0.1 (never 1.0 or 0.1000000001)
//	integers, decimals      plain decimal as the database gives it
//	bytes, text             as they are
//	NULL                    no field at all

// Renderer renders the values of one result set's columns.
type Renderer struct {
	kinds []valueKind
}

type valueKind int

const (
	kindAny valueKind = iota
	kindTime
	kindDate
	kindBool
	kindFloat64
	kindFloat32
)

// NewRenderer reads the columns' database types (nil types render every
// value by its Go type only). Columns named in booleans render as true/false
// whatever their type (MySQL's TINYINT(1) BOOLEAN).
func NewRenderer(types []*sql.ColumnType, booleans ...string) *Renderer {
	r := &Renderer{kinds: make([]valueKind, len(types))}
	for i, t := range types {
		r.kinds[i] = kindOf(t.DatabaseTypeName())
		for _, b := range booleans {
			if t.Name() == b {
				r.kinds[i] = kindBool
			}
		}
	}
	return r
}

func kindOf(dbType string) valueKind {
	switch t := strings.ToUpper(dbType); {
	case t == "DATE":
		return kindDate
	case strings.HasPrefix(t, "TIMESTAMP"), t == "DATETIME", t == "TIMESTAMPTZ":
		return kindTime
	case t == "BOOL", t == "BOOLEAN":
		return kindBool
	case t == "FLOAT4", t == "FLOAT": // PostgreSQL real, MySQL FLOAT: single precision
		return kindFloat32
	case t == "FLOAT8", t == "DOUBLE", t == "DOUBLE PRECISION", t == "REAL":
		return kindFloat64
	}
	return kindAny
}

// Render renders the value v of column i; isNull is true for SQL NULL.
func (r *Renderer) Render(i int, v any) (s string, isNull bool) {
	if v == nil {
		return "", true
	}
	k := kindAny
	if r != nil && i < len(r.kinds) {
		k = r.kinds[i]
	}
	switch k {
	case kindTime, kindDate:
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case []byte:
			t, _ = parseTime(string(x))
		case string:
			t, _ = parseTime(x)
		}
		if !t.IsZero() {
			if k == kindDate {
				return t.Format(time.DateOnly), false
			}
			return t.UTC().Format(time.RFC3339Nano), false
		}
	case kindBool:
		switch x := v.(type) {
		case bool:
			return strconv.FormatBool(x), false
		case int64:
			return strconv.FormatBool(x != 0), false
		case []byte, string:
			if b, err := strconv.ParseBool(asString(x)); err == nil {
				return strconv.FormatBool(b), false
			}
		}
	case kindFloat64, kindFloat32:
		bits := 64
		if k == kindFloat32 {
			bits = 32
		}
		switch x := v.(type) {
		case []byte, string:
			if f, err := strconv.ParseFloat(asString(x), bits); err == nil {
				return strconv.FormatFloat(f, 'f', -1, bits), false
			}
		case float64: // pgx scans a real (float4) into any as float64
			return strconv.FormatFloat(x, 'f', -1, bits), false
		case int64: // SQLite stores an integral REAL as an integer
			return strconv.FormatInt(x, 10), false
		}
	}
	return Format(v)
}

func asString(v any) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	s, _ := v.(string)
	return s
}

// timeLayouts are the text forms drivers return times in: MySQL and MariaDB
// without parseTime, SQLite's DATETIME text (as written by its own
// functions, Python or Go), dates alone.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	time.DateOnly,
}

// parseTime reads s in one of timeLayouts; a time without a zone is UTC.
func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Format renders a value by its Go type alone: integers and floats in
// plain decimal (shortest round trip), times as RFC 3339 in UTC, booleans
// as true/false, bytes and text as they are; isNull is true for nil.
func Format(v any) (s string, isNull bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, false
	case []byte:
		return string(x), false
	case int64:
		return strconv.FormatInt(x, 10), false
	case int32:
		return strconv.FormatInt(int64(x), 10), false
	case int:
		return strconv.Itoa(x), false
	case uint64:
		return strconv.FormatUint(x, 10), false
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), false
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), false
	case bool:
		return strconv.FormatBool(x), false
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), false
	case fmt.Stringer:
		return x.String(), false
	}
	return fmt.Sprint(v), false
}
