package tasks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"
)

type declared struct {
	name  string
	queue string
	Email string            `json:"email"`
	Count int               `json:"count,omitempty"`
	Score float64           `json:"score,omitempty"`
	Tags  []string          `json:"tags,omitempty"`
	Meta  map[string]string `json:"meta,omitempty"`
	Wait  tasks.Duration    `json:"wait,omitempty"`
	When  *time.Time        `json:"when"`
	Flag  bool              `json:"flag,omitempty"`
}

func (d declared) Kind() string    { return d.name }
func (d declared) Validate() error { return nil }
func (d declared) KindDefaults() tasks.KindDefaults {
	return tasks.KindDefaults{Queue: d.queue, MaxRetry: 1}
}

func TestDescribeDeclaredKinds(t *testing.T) {
	t.Parallel()
	spec, err := tasks.Describe(declared{name: "app:x", queue: "q"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.Timeout.D() != tasks.DefaultAppTimeout || len(spec.Fields) != 8 {
		t.Fatalf("spec %+v", spec)
	}
	types := map[string]string{}
	for _, f := range spec.Fields {
		types[f.Name] = f.Type
		if f.Required != (f.Name == "email") {
			t.Errorf("field %s required=%v", f.Name, f.Required)
		}
	}
	want := map[string]string{"email": "string", "count": "integer", "score": "number", "tags": "array", "meta": "object", "wait": "any", "when": "string", "flag": "boolean"}
	for n, ty := range want {
		if types[n] != ty {
			t.Errorf("field %s has type %q, want %q", n, types[n], ty)
		}
	}
	for _, c := range []struct{ args, want string }{
		{`{"email":"a@x","count":2,"score":1,"tags":["a"],"meta":{},"wait":"1s","when":null,"flag":true}`, ""},
		{`{"email":"a@x","score":1.5}`, ""},
		{`{"count":1}`, `field "email": is required (string)`},
		{`{"email":"a","count":1.5}`, `field "count": must be JSON integer, got number`},
		{`{"email":"a","x":1}`, `field "x": is not a field of this kind`},
		{`"hi"`, `must be a JSON object`},
	} {
		err := spec.Check([]byte(c.args))
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%s) = %v, want %q", c.args, err, c.want)
		}
	}
	for _, c := range []struct {
		d    declared
		want string
	}{
		{declared{name: "cache:mine", queue: "q"}, `the namespace "cache" is cachekeeper's`},
		{declared{name: "nonamespace", queue: "q"}, `name it "namespace:name"`},
		{declared{name: "app:x", queue: ""}, "KindDefaults.Queue: is empty"},
	} {
		if _, err := tasks.Describe(c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Describe(%q, queue %q) = %v, want %q", c.d.name, c.d.queue, err, c.want)
		}
	}
	if _, err := tasks.NewTask(declared{name: "app:x", queue: "q", Email: "a"}); err != nil {
		t.Fatalf("NewTask of a declared kind: %v", err)
	}
}
