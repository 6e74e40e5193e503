package session

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is how Create and Touch write created_at and last_seen: the
// format of Python's datetime.utcnow().isoformat() with microseconds, UTC
// without a zone, as the FastAPI guide writes it.
const TimeLayout = "2006-01-02T15:04:05.000000"

// FormatTime renders t in TimeLayout (UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// naiveLayouts are ISO 8601 date-times without a zone, read as UTC: Python's
// isoformat() (which drops the fraction when it is zero) and str(datetime)
// (a space instead of the T).
var naiveLayouts = []string{
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
}

// maxUnixSeconds bounds what ParseTime accepts as Unix seconds (year 5138):
// a larger number is most likely milliseconds, and guessing is not allowed.
const maxUnixSeconds = 1e11

// ParseTime reads a session timestamp as applications write it:
//   - ISO 8601 without a zone, taken as UTC ("2024-01-15T10:30:00.123456",
//     Python's datetime.utcnow().isoformat(); also with a space for the T),
//   - RFC 3339 with a zone ("2024-01-15T10:30:00Z", "...+02:00"),
//   - Unix seconds, possibly fractional ("1705314600", "1705314600.25").
//
// Anything else is an error, so that a caller never acts on a guess.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty timestamp")
	}
	if isNumber(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f >= maxUnixSeconds || math.IsNaN(f) {
			return time.Time{}, fmt.Errorf("timestamp %q is not Unix seconds (milliseconds are not accepted)", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range naiveLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is neither ISO 8601 (2024-01-15T10:30:00.123456), RFC 3339 nor Unix seconds", s)
}

func isNumber(s string) bool {
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0:
			dot = true
		default:
			return false
		}
	}
	return true
}
