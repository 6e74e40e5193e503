package tasks

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing. A job carries its producer's trace context in its task headers,
// as W3C Trace Context ("traceparent", "tracestate"), so that the worker's
// span for the job is a child of the span that enqueued it. Client.Enqueue
// starts a producer span ("enqueue <kind>") under the span in its ctx (or
// under the parent given with TraceParent) and puts that span's context in
// the headers. Producers outside Go send the traceparent of their own span
// (the inbox entry's "traceparent" field).

// TracerName is the instrumentation name of cachekeeper's spans.
const TracerName = "github.com/cachekeeper/cachekeeper"

// Header names of the trace context a job carries.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// WithTracerProvider makes the client record a producer span per job with
// tp. Without it the client uses OpenTelemetry's global provider (a no-op
// unless the application set one), and records a span only under a span
// already in the context; the trace context travels either way.
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *Client) {
		if tp != nil {
			c.tracer, c.tracing = tp.Tracer(TracerName), true
		}
	}
}

// traceParentOption carries a remote parent for the job's trace; asynq
// ignores options of types it does not know, and NewTask takes it out.
type traceParentOption struct{ parent, state string }

func (o traceParentOption) String() string         { return fmt.Sprintf("TraceParent(%q)", o.parent) }
func (o traceParentOption) Type() asynq.OptionType { return asynq.OptionType(-1) }
func (o traceParentOption) Value() interface{}     { return o.parent }

// TraceParent makes the job a child of a remote span given in W3C Trace
// Context format ("00-<trace id>-<span id>-<flags>", and the optional
// tracestate), for producers that received it from elsewhere (the inbox
// bridge passes an entry's traceparent field so).
func TraceParent(traceparent, tracestate string) Option {
	return traceParentOption{parent: traceparent, state: tracestate}
}

// ParseTraceParent checks a W3C traceparent and returns a context holding
// it as a remote parent.
func ParseTraceParent(ctx context.Context, traceparent, tracestate string) (context.Context, error) {
	carrier := propagation.MapCarrier{HeaderTraceParent: traceparent}
	if tracestate != "" {
		carrier[HeaderTraceState] = tracestate
	}
	out := propagation.TraceContext{}.Extract(ctx, carrier)
	if !trace.SpanContextFromContext(out).IsValid() {
		return ctx, fmt.Errorf("%w: traceparent %q is not a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)", ErrInvalidPayload, traceparent)
	}
	return out, nil
}

// splitTraceOption removes a TraceParent option from opts.
func splitTraceOption(opts []Option) ([]Option, *traceParentOption) {
	for i, o := range opts {
		if tp, ok := o.(traceParentOption); ok {
			rest := append(append(make([]Option, 0, len(opts)-1), opts[:i]...), opts[i+1:]...)
			return rest, &tp
		}
	}
	return opts, nil
}

// startProducer starts the producer span of a job about to be enqueued and
// puts its context in t's headers. The returned end records err. It costs
// nothing without a tracer provider given to the client and without a
// span in ctx or a TraceParent.
func (c *Client) startProducer(ctx context.Context, t *asynq.Task, parent *traceParentOption) (context.Context, func(info *asynq.TaskInfo, err error)) {
	if parent != nil {
		if pctx, err := ParseTraceParent(ctx, parent.parent, parent.state); err == nil {
			ctx = pctx
		}
	}
	if !c.tracing && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, func(*asynq.TaskInfo, error) {}
	}
	tracer := c.tracer
	if tracer == nil {
		tracer = otel.GetTracerProvider().Tracer(TracerName)
	}
	ctx, span := tracer.Start(ctx, "enqueue "+t.Type(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "asynq"), attribute.String("messaging.operation.type", "send"),
			attribute.String("cachekeeper.kind", t.Type())))
	if h := t.Headers(); h != nil {
		propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(h))
	}
	return ctx, func(info *asynq.TaskInfo, err error) {
		if info != nil {
			span.SetAttributes(attribute.String("messaging.message.id", info.ID), attribute.String("messaging.destination.name", info.Queue))
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
