package tasks

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// shapes caches the fields of each payload type.
var shapes sync.Map // reflect.Type -> []FieldSpec

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
)

// shapeOf returns the JSON fields of p's struct type, as encoding/json
// reads them.
func shapeOf(p any) ([]FieldSpec, error) {
	t := reflect.TypeOf(p)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("the payload must be a struct (or a pointer to one), got %v", reflect.TypeOf(p))
	}
	if f, ok := shapes.Load(t); ok {
		return f.([]FieldSpec), nil
	}
	var fields []FieldSpec
	structFields(t, &fields)
	slices.SortFunc(fields, func(a, b FieldSpec) int { return strings.Compare(a.Name, b.Name) })
	shapes.Store(t, fields)
	return fields, nil
}

func structFields(t reflect.Type, out *[]FieldSpec) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				structFields(et, out) // embedded: its fields are promoted
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,") || ft.Kind() == reflect.Pointer
		*out = append(*out, FieldSpec{Name: name, Type: jsonType(ft), Required: !optional})
	}
}

// jsonType is the JSON type encoding/json reads into t.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return "string"
	}
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return "any"
	}
	if t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string" // []byte is base64
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "any"
}

// Check reports whether args is a payload of this kind as far as its shape
// goes: a JSON object with no unknown field, every required field present
// and not null, each of its JSON type. The error is a *FieldError. The
// worker decodes and validates it fully (Validate) when the job runs.
func (s KindSpec) Check(args []byte) error {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return &FieldError{Kind: s.Kind, Field: "(payload)", Msg: "must be a JSON object, such as " + s.example()}
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: trailing data after the JSON object", ErrInvalidPayload, s.Kind)
	}
	for name := range obj {
		if !slices.ContainsFunc(s.Fields, func(f FieldSpec) bool { return f.Name == name }) {
			return &FieldError{Kind: s.Kind, Field: name, Msg: "is not a field of this kind (fields: " + s.fieldNames() + ")"}
		}
	}
	for _, f := range s.Fields {
		v, ok := obj[f.Name]
		if !ok || string(v) == "null" {
			if f.Required {
				return &FieldError{Kind: s.Kind, Field: f.Name, Msg: "is required (" + f.Type + ")"}
			}
			continue
		}
		if got := valueType(v); !typeFits(f.Type, got) {
			return &FieldError{Kind: s.Kind, Field: f.Name, Msg: fmt.Sprintf("must be JSON %s, got %s", f.Type, got)}
		}
	}
	return nil
}

func (s KindSpec) fieldNames() string {
	names := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// example is a JSON object with the required fields, for error messages.
func (s KindSpec) example() string {
	var parts []string
	for _, f := range s.Fields {
		if f.Required {
			parts = append(parts, fmt.Sprintf("%q: <%s>", f.Name, f.Type))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func valueType(v json.RawMessage) string {
	switch c := bytes.TrimSpace(v); {
	case len(c) == 0:
		return "nothing"
	case c[0] == '"':
		return "string"
	case c[0] == '{':
		return "object"
	case c[0] == '[':
		return "array"
	case c[0] == 't' || c[0] == 'f':
		return "boolean"
	case bytes.ContainsAny(c, ".eE"):
		return "number"
	default:
		return "integer"
	}
}

func typeFits(want, got string) bool {
	return want == "any" || want == got || (want == "number" && got == "integer")
}

// Args is the payload of a declared kind given as JSON, by a producer that
// does not have its Go type (the inbox bridge, `cachekeeper enqueue job`):
// it is checked against the kind's spec, sent as it is, and decoded into the
// kind's own type, and validated, by the worker that handles it.
type Args struct {
	spec KindSpec
	raw  json.RawMessage
}

// NewArgs checks raw against spec and returns the payload.
func NewArgs(spec KindSpec, raw []byte) (*Args, error) {
	if err := spec.Check(raw); err != nil {
		return nil, err
	}
	return &Args{spec: spec, raw: bytes.Clone(raw)}, nil
}

// Kind implements Payload.
func (a *Args) Kind() string { return a.spec.Kind }

// Validate implements Payload: the shape check.
func (a *Args) Validate() error { return a.spec.Check(a.raw) }

// KindDefaults implements Declared.
func (a *Args) KindDefaults() KindDefaults {
	return KindDefaults{Queue: a.spec.Queue, MaxRetry: a.spec.MaxRetry, Timeout: a.spec.Timeout.D()}
}

// MarshalJSON returns the payload as it was given.
func (a *Args) MarshalJSON() ([]byte, error) { return a.raw, nil }
