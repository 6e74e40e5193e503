package tasks

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
)

// badDuration is the placeholder field name Duration.UnmarshalJSON gives
// its errors: encoding/json does not tell a custom unmarshaler which field
// it decodes.
const badDuration = "(duration)"

// locateDurationError replaces the placeholder field of a Duration's
// decoding error with the JSON name of the field that holds the bad value,
// found by decoding the object's fields of type Duration one by one.
func locateDurationError(data []byte, v any, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != badDuration {
		return err
	}
	if name := BadDurationField(data, v); name != "" {
		fe.Field = name
	}
	return err
}

// BadDurationField returns the JSON name of the first field of the struct v
// points to whose type is Duration (or *Duration) and whose value in the
// JSON object data is not a valid duration, or "" when there is none.
func BadDurationField(data []byte, v any) string {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return ""
	}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	durType := reflect.TypeOf(Duration(0))
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft != durType {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		val, ok := raw[name]
		if !ok || string(val) == "null" {
			continue
		}
		var d Duration
		if d.UnmarshalJSON(val) != nil {
			return name
		}
	}
	return ""
}
