package tasks

import (
	"github.com/cachekeeper/cachekeeper/internal/keys"

	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Payload is implemented by every job's arguments.
type Payload interface {
	// Kind returns the stable kind name, for example "cache:warm".
	Kind() string
	// Validate reports the first field that is wrong, as a *FieldError.
	Validate() error
}

// ErrInvalidPayload is wrapped by every decoding or validation failure.
var ErrInvalidPayload = errors.New("invalid payload")

// FieldError says which field of which kind is wrong and why.
type FieldError struct {
	Kind  string
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: field %q: %s", e.Kind, e.Field, e.Msg)
}

// Unwrap lets errors.Is(err, ErrInvalidPayload) match.
func (e *FieldError) Unwrap() error { return ErrInvalidPayload }

func fieldErr(kind, field, format string, a ...any) error {
	return &FieldError{Kind: kind, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Decode parses data as the payload of kind and validates it. Unknown fields
// are rejected so that a misspelt argument is never silently ignored.
func Decode(kind string, data []byte) (Payload, error) {
	info, ok := Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q (known: %s)", ErrInvalidPayload, kind, strings.Join(kindNames(), ", "))
	}
	p := info.New()
	if err := DecodeInto(kind, data, p); err != nil {
		return nil, err
	}
	return p, nil
}

// DecodeInto parses data into p (a pointer to a payload struct) and validates it.
func DecodeInto(kind string, data []byte, p Payload) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return describeJSONError(kind, locateDurationError(data, p, err))
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: trailing data after the JSON object", ErrInvalidPayload, kind)
	}
	return p.Validate()
}

func describeJSONError(kind string, err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(payload)"
		}
		return &FieldError{Kind: kind, Field: field, Msg: fmt.Sprintf("must be %s, got JSON %s", jsonTypeName(typeErr), typeErr.Value)}
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("%w: %s: malformed JSON at byte %d: %v", ErrInvalidPayload, kind, syntaxErr.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s: malformed JSON: the payload ends early", ErrInvalidPayload, kind)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return &FieldError{Kind: kind, Field: strings.Trim(name, `"`), Msg: "is not a field of this kind"}
	default:
		var fe *FieldError
		if errors.As(err, &fe) {
			if fe.Kind == "" {
				fe.Kind = kind
			}
			return fe
		}
		return fmt.Errorf("%w: %s: %v", ErrInvalidPayload, kind, err)
	}
}

func jsonTypeName(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	switch e.Type.Kind().String() {
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	}
	return "a " + e.Type.String()
}

func kindNames() []string {
	var names []string
	for _, k := range Kinds() {
		names = append(names, k.Kind)
	}
	return names
}

// IDs is a list of row ids. It decodes from JSON strings or numbers, so that
// producers in any language may send {"ids": [1, 2]} or {"ids": ["a1"]}.
type IDs []string

// UnmarshalJSON accepts a list of strings and integers.
func (ids *IDs) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return &FieldError{Field: "ids", Msg: "must be a list of ids"}
	}
	out := make(IDs, 0, len(raw))
	for i, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.UseNumber()
		if err := dec.Decode(&n); err != nil {
			return &FieldError{Field: fmt.Sprintf("ids[%d]", i), Msg: "must be a string or an integer"}
		}
		if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			return &FieldError{Field: fmt.Sprintf("ids[%d]", i), Msg: fmt.Sprintf("must be a string or an integer, got %s", n)}
		}
		out = append(out, n.String())
	}
	*ids = out
	return nil
}

// ID converts a Go value to an id: strings and integers are accepted.
func ID(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int:
		return strconv.FormatInt(int64(x), 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return "", fmt.Errorf("%w: id %v has type %T; use a string or an integer", ErrInvalidPayload, v, v)
}

func validateIDs(kind string, ids IDs, required bool) error {
	if required && len(ids) == 0 {
		return fieldErr(kind, "ids", "must not be empty")
	}
	for i, id := range ids {
		if strings.TrimSpace(id) == "" {
			return fieldErr(kind, fmt.Sprintf("ids[%d]", i), "must not be blank")
		}
	}
	return nil
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("90s", "24h"); an integer is taken as seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "90s" or 90.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return &FieldError{Field: "(duration)", Msg: fmt.Sprintf("is not a duration: %q (use 90s, 15m, 24h)", s)}
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return &FieldError{Field: "(duration)", Msg: "must be a duration string such as \"15m\" or a number of seconds"}
	}
	*d = Duration(time.Duration(n) * time.Second)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func validateCacheName(kind, name string) error {
	if err := keys.CheckCacheName(name); err != nil {
		return fieldErr(kind, "cache", "%v", err)
	}
	return nil
}
