package tasks

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Kinds of the application's own. A kind is declared once, by its payload
// type: Kind() names it, Validate() checks it, and KindDefaults() gives its
// queue, retry budget and timeout.
//
//	type GreetArgs struct {
//		Name string `json:"name"`
//	}
//
//	func (GreetArgs) Kind() string { return "example:greet" }
//	func (a GreetArgs) Validate() error { ... }
//	func (GreetArgs) KindDefaults() tasks.KindDefaults {
//		return tasks.KindDefaults{Queue: "example", MaxRetry: 5, Timeout: time.Minute}
//	}
//
// Client.Enqueue sends it like a built-in kind; worker.WithKind registers
// its handler behind the same adapter and middleware as the built-in ones.
// A worker that handles the kind serves its queue and records the kind
// (KindSpec) in Redis, so that producers outside Go (the inbox,
// `cachekeeper enqueue job`) can send it too.

// KindDefaults are the defaults of a kind of the application's own.
type KindDefaults struct {
	// Queue is the kind's queue. Give the application's kinds a queue of
	// their own ("mail", "reports"): only workers that handle a kind serve
	// its queue, so a worker without its handler never takes its jobs.
	Queue string
	// MaxRetry is how many times a failed job is retried before it is
	// archived (0: never retried).
	MaxRetry int
	// Timeout bounds one run of the job (0: DefaultAppTimeout).
	Timeout time.Duration
}

// DefaultAppTimeout is the timeout of a declared kind whose KindDefaults
// leave Timeout at 0.
const DefaultAppTimeout = 30 * time.Minute

// Declared is the payload of a kind of the application's own.
type Declared interface {
	Payload
	KindDefaults() KindDefaults
}

// KindSpec describes a declared kind as workers record it in Redis: its
// name, defaults, and the shape of its payload (derived from the Go
// struct), enough for producers outside Go to be refused a job no worker
// could decode.
type KindSpec struct {
	Kind     string      `json:"kind"`
	Queue    string      `json:"queue"`
	MaxRetry int         `json:"max_retry"`
	Timeout  Duration    `json:"timeout"`
	Fields   []FieldSpec `json:"fields"`
}

// FieldSpec is one field of a payload, by its JSON name.
type FieldSpec struct {
	Name string `json:"name"`
	// Type is the JSON type: string, integer, number, boolean, array,
	// object, or any (a type that decodes itself, such as Duration).
	Type string `json:"type"`
	// Required fields must be present and not null: fields without
	// omitempty that are not pointers.
	Required bool `json:"required"`
}

// reservedPrefixes are the namespaces of cachekeeper's own kinds.
var reservedPrefixes = []string{"cache:", "session:", "ratelimit:", "notify:", "cachekeeper:"}

var kindName = regexp.MustCompile(`^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)+$`)

// CheckKindName reports whether name can name a kind of the application's
// own: "namespace:name" (letters, digits, '_', '.', '-'), outside
// cachekeeper's namespaces.
func CheckKindName(name string) error {
	if !kindName.MatchString(name) {
		return fmt.Errorf("kind %q: name it \"namespace:name\" with letters, digits, '_', '.' or '-', such as \"mail:welcome\"", name)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("kind %q: the namespace %q is cachekeeper's; pick another", name, strings.TrimSuffix(p, ":"))
		}
	}
	return nil
}

// Describe checks the declaration of p's kind and returns its spec.
func Describe(p Declared) (KindSpec, error) {
	if p == nil {
		return KindSpec{}, fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	kind := p.Kind()
	if err := CheckKindName(kind); err != nil {
		return KindSpec{}, err
	}
	d := p.KindDefaults()
	if err := checkQueueName(d.Queue); err != nil {
		return KindSpec{}, fmt.Errorf("kind %q: KindDefaults.Queue: %w", kind, err)
	}
	if d.MaxRetry < 0 {
		return KindSpec{}, fmt.Errorf("kind %q: KindDefaults.MaxRetry must be 0 or more, got %d", kind, d.MaxRetry)
	}
	if d.Timeout < 0 {
		return KindSpec{}, fmt.Errorf("kind %q: KindDefaults.Timeout must not be negative, got %s", kind, d.Timeout)
	}
	if d.Timeout == 0 {
		d.Timeout = DefaultAppTimeout
	}
	fields, err := shapeOf(p)
	if err != nil {
		return KindSpec{}, fmt.Errorf("kind %q: %w", kind, err)
	}
	return KindSpec{Kind: kind, Queue: d.Queue, MaxRetry: d.MaxRetry, Timeout: Duration(d.Timeout), Fields: fields}, nil
}

func checkQueueName(q string) error {
	if strings.TrimSpace(q) == "" {
		return fmt.Errorf("is empty: give the kind a queue of its own, such as \"mail\" (only workers that handle the kind serve it)")
	}
	if strings.ContainsAny(q, " \t\r\n{}") {
		return fmt.Errorf("queue %q must not contain spaces or braces", q)
	}
	return nil
}

// info returns the KindInfo of a declared kind.
func (s KindSpec) info() KindInfo {
	return KindInfo{Kind: s.Kind, Queue: s.Queue, MaxRetry: s.MaxRetry, Timeout: s.Timeout.D()}
}

// kindInfo returns the defaults of p's kind: a built-in kind's, or those a
// declared kind gives.
func kindInfo(p Payload) (KindInfo, error) {
	if info, ok := Lookup(p.Kind()); ok {
		return info, nil
	}
	d, ok := p.(Declared)
	if !ok {
		return KindInfo{}, fmt.Errorf("%w: unknown kind %q: declare it (a KindDefaults method on its payload, see Declared) or use one of %s",
			ErrInvalidPayload, p.Kind(), strings.Join(kindNames(), ", "))
	}
	spec, err := describeCached(d)
	if err != nil {
		return KindInfo{}, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	return spec.info(), nil
}

// describeCached is Describe, except for Args, which carries its spec.
func describeCached(d Declared) (KindSpec, error) {
	if a, ok := d.(*Args); ok {
		return a.spec, nil
	}
	return Describe(d)
}
