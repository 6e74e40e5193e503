package inbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// Entry is one job as a producer pushes it onto the inbox:
//
//	{"kind": "cache:invalidate", "args": {"cache": "user", "ids": [1]},
//	 "options": {"queue": "critical", "process_in": "30s", "task_id": "user-1-v7"}}
//
// kind is a task kind (cache:warm, cache:invalidate, ...), args its payload
// exactly as the Go client would send it, options optional. Unknown fields
// are rejected, so that a misspelt name is never silently ignored. A
// cache:warm entry without options (or with empty ones) and with at most
// tasks.MaxWarmCacheIDs ids is coalesced with the other warms of its cache, as
// tasks.Client.WarmCache does, instead of becoming a job of its own; so is a
// cache:invalidate entry of a cache's ids without options or rewarm, as
// tasks.Client.Invalidate does (the worker deletes them in fenced batches).
//
// traceparent (and tracestate), optional, is the W3C Trace Context of the
// producer's span: the job's spans join that trace.
type Entry struct {
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args"`
	Options     *Options        `json:"options,omitempty"`
	TraceParent string          `json:"traceparent,omitempty"`
	TraceState  string          `json:"tracestate,omitempty"`
}

// Options are the per-job settings a producer may give.
type Options struct {
	// Queue replaces the kind's default queue; it must be a queue the
	// workers serve.
	Queue string `json:"queue,omitempty"`
	// TaskID names the job; a second job with the same id is dropped as a
	// duplicate while asynq still knows the first. Without it, every entry
	// becomes its own job.
	TaskID string `json:"task_id,omitempty"`
	// ProcessIn delays the job ("30s", or a number of seconds).
	ProcessIn *tasks.Duration `json:"process_in,omitempty"`
	// ProcessAt runs the job no earlier than this time (RFC 3339).
	ProcessAt *time.Time `json:"process_at,omitempty"`
	// MaxRetry replaces the kind's retry budget.
	MaxRetry *int `json:"max_retry,omitempty"`
	// Timeout replaces the kind's timeout for one run ("5m").
	Timeout *tasks.Duration `json:"timeout,omitempty"`
	// Retention keeps the finished job (and its result) this long ("1h").
	Retention *tasks.Duration `json:"retention,omitempty"`
}

// Job is a parsed, validated entry, ready to enqueue.
type Job struct {
	Payload tasks.Payload
	Options []tasks.Option
	// TaskID is the id the producer chose, or "".
	TaskID string
	// Coalesce says the job is a warm or an invalidation to add to its
	// cache's pending ids (tasks.Client.WarmCache, tasks.Client.Invalidate)
	// rather than a job of its own.
	Coalesce bool
	// Delayed says options.process_in or options.process_at was given.
	Delayed bool
}

// KindResolver finds the kinds of the application's own that running
// workers handle (*catalog.Resolver is one).
type KindResolver interface {
	// Spec returns the spec of kind, and false when no worker handles it.
	Spec(kind string) (tasks.KindSpec, bool, error)
	// Known lists every kind a producer may send.
	Known() []string
}

// Parse decodes and validates one inbox entry. queues, when not empty, are
// the queues options.queue may name (besides a declared kind's own queue).
// With a KindResolver, a kind of the application's own that a running
// worker handles is accepted, its args checked against its spec. The error
// says what is wrong in one line; it wraps tasks.ErrInvalidPayload.
func Parse(raw []byte, queues []string, kinds ...KindResolver) (Job, error) {
	if !utf8.Valid(raw) {
		// encoding/json would replace the bad bytes with U+FFFD, and the job
		// would then touch other keys than the producer named.
		return Job{}, invalid("entry is not valid UTF-8 (bad byte at offset %d): keys, patterns and ids are used byte for byte, so send them as UTF-8 text; the dead letter keeps the original bytes in entry_base64", badUTF8At(raw))
	}
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Job{}, invalid("%s", describe(err, raw))
	}
	if dec.More() {
		return Job{}, invalid("trailing data after the JSON object")
	}
	if e.Kind == "" {
		return Job{}, invalid(`"kind" is required, for example "cache:invalidate"`)
	}
	var spec *tasks.KindSpec
	if _, ok := tasks.Lookup(e.Kind); !ok {
		var err error
		if spec, err = appKind(e.Kind, kinds); err != nil {
			return Job{}, err
		}
	}
	if len(e.Args) == 0 || string(e.Args) == "null" {
		return Job{}, invalid(`"args" is required: the job's arguments as an object, for example {"cache": "user", "ids": [1]}`)
	}
	var p tasks.Payload
	var err error
	if spec != nil {
		p, err = tasks.NewArgs(*spec, e.Args)
		queues = append(slices.Clip(queues), spec.Queue)
	} else {
		p, err = tasks.Decode(e.Kind, e.Args)
	}
	if err != nil {
		return Job{}, fmt.Errorf("args: %w", err)
	}
	job := Job{Payload: p}
	if e.Options != nil {
		if job.Options, err = e.Options.build(queues); err != nil {
			return Job{}, err
		}
		job.TaskID = e.Options.TaskID
		job.Delayed = e.Options.ProcessIn != nil || e.Options.ProcessAt != nil
	}
	if e.TraceParent != "" {
		if _, err := tasks.ParseTraceParent(context.Background(), e.TraceParent, e.TraceState); err != nil {
			return Job{}, invalid("%v", strings.TrimPrefix(err.Error(), tasks.ErrInvalidPayload.Error()+": "))
		}
		job.Options = append(job.Options, tasks.TraceParent(e.TraceParent, e.TraceState))
	} else if e.TraceState != "" {
		return Job{}, invalid("tracestate without traceparent: send both, or neither")
	}
	// A warm without options waits for company like tasks.Client.WarmCache's,
	// so that producers warming one row at a time cost few SQL queries.
	noOptions := e.Options == nil || *e.Options == Options{}
	if w, ok := p.(*tasks.WarmArgs); ok && noOptions && len(w.IDs) <= tasks.MaxWarmCacheIDs {
		job.Coalesce = true
	}
	// So does an invalidation of a cache's ids without options or rewarm,
	// like tasks.Client.Invalidate's, so that one per write costs one
	// fenced script call per batch rather than a job each.
	if a, ok := p.(*tasks.InvalidateArgs); ok && noOptions && a.Cache != "" && len(a.Keys) == 0 && !a.Rewarm &&
		len(a.IDs) > 0 && len(a.IDs) <= tasks.MaxInvalidateIDs {
		job.Coalesce = true
	}
	return job, nil
}

// appKind returns the spec of a kind of the application's own that a
// running worker handles, or the error naming every kind known.
func appKind(kind string, kinds []KindResolver) (*tasks.KindSpec, error) {
	var names []string
	for _, k := range tasks.Kinds() {
		names = append(names, k.Kind)
	}
	for _, r := range kinds {
		if r == nil {
			continue
		}
		spec, ok, err := r.Spec(kind)
		if err != nil {
			return nil, invalid("kind %q: %v", kind, err)
		}
		if ok {
			return &spec, nil
		}
		names = r.Known()
	}
	return nil, invalid("unknown kind %q (known: %s): no running worker handles it", kind, strings.Join(names, ", "))
}

func (o *Options) build(queues []string) ([]tasks.Option, error) {
	var out []tasks.Option
	if o.Queue != "" {
		if len(queues) > 0 && !slices.Contains(queues, o.Queue) {
			return nil, invalid("options.queue %q is not served by the workers (queues: %s)", o.Queue, strings.Join(queues, ", "))
		}
		out = append(out, tasks.Queue(o.Queue))
	}
	if o.TaskID != "" {
		if strings.TrimSpace(o.TaskID) != o.TaskID {
			return nil, invalid("options.task_id %q must not start or end with spaces", o.TaskID)
		}
		out = append(out, tasks.TaskID(o.TaskID))
	}
	if o.ProcessIn != nil && o.ProcessAt != nil {
		return nil, invalid("options.process_in and options.process_at cannot both be set; give one")
	}
	if o.ProcessIn != nil {
		if o.ProcessIn.D() < 0 {
			return nil, invalid("options.process_in must not be negative, got %s", o.ProcessIn.D())
		}
		out = append(out, tasks.ProcessIn(o.ProcessIn.D()))
	}
	if o.ProcessAt != nil {
		out = append(out, tasks.ProcessAt(*o.ProcessAt))
	}
	if o.MaxRetry != nil {
		if *o.MaxRetry < 0 {
			return nil, invalid("options.max_retry must be 0 or more, got %d", *o.MaxRetry)
		}
		out = append(out, tasks.MaxRetry(*o.MaxRetry))
	}
	if o.Timeout != nil {
		if o.Timeout.D() <= 0 {
			return nil, invalid("options.timeout must be positive, got %s", o.Timeout.D())
		}
		out = append(out, tasks.Timeout(o.Timeout.D()))
	}
	if o.Retention != nil {
		if o.Retention.D() < 0 {
			return nil, invalid("options.retention must not be negative, got %s", o.Retention.D())
		}
		out = append(out, tasks.Retention(o.Retention.D()))
	}
	return out, nil
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: inbox entry: %s", tasks.ErrInvalidPayload, fmt.Sprintf(format, a...))
}

// describe turns a JSON decoding error of an entry into one line naming
// the field.
func describe(err error, raw []byte) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var fe *tasks.FieldError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON (at byte %d: %v); push an object such as {\"kind\": \"cache:invalidate\", \"args\": {...}}", syn.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Sprintf("must be a JSON object, got JSON %s", typ.Value)
		}
		return fmt.Sprintf("field %q must not be JSON %s", field, typ.Value)
	case errors.As(err, &fe):
		var e struct {
			Options json.RawMessage `json:"options"`
		}
		if json.Unmarshal(raw, &e) == nil {
			if name := tasks.BadDurationField(e.Options, &Options{}); name != "" {
				return fmt.Sprintf("options.%s %s", name, fe.Msg)
			}
		}
		return fmt.Sprintf("options: %s", fe.Msg)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Sprintf("unknown field %s (fields: kind, args, options, traceparent, tracestate; options: queue, task_id, process_in, process_at, max_retry, timeout, retention)",
			strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF):
		return "empty entry"
	}
	return err.Error()
}

// badUTF8At is the offset of the first byte of raw that is not UTF-8.
func badUTF8At(raw []byte) int {
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(raw)
}
