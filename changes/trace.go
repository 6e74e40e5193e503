package changes

import (
	"context"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cachekeeper/cachekeeper/tasks"
)

// With Config.TracerProvider, each transaction that changes a followed
// table gets a span ("changes transaction"), from its first such change to
// its commit; the jobs it enqueues are its children (their producer spans,
// then the worker's job spans), and it lists their task ids
// (cachekeeper.job_ids).

// maxTracedJobIDs bounds the ids listed on one transaction's span.
const maxTracedJobIDs = 100

type txTrace struct {
	tracer trace.Tracer
	ctx    context.Context // the open transaction's span, or nil
	span   trace.Span
	jobs   int
	ids    []string
}

// txContext returns ctx under the open transaction's span, opening it.
func (a *applier) txContext(ctx context.Context) context.Context {
	t := &a.trace
	if t.tracer == nil {
		return ctx
	}
	if t.span == nil {
		t.ctx, t.span = t.tracer.Start(ctx, "changes transaction", trace.WithSpanKind(trace.SpanKindConsumer))
	}
	return t.ctx
}

// noteJob records a job the transaction enqueued (from any goroutine).
func (a *applier) noteJob(info *asynq.TaskInfo) {
	if a.trace.tracer == nil || info == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.trace.jobs++
	if len(a.trace.ids) < maxTracedJobIDs {
		a.trace.ids = append(a.trace.ids, info.ID)
	}
}

// endTx ends the transaction's span once its jobs are enqueued (or failed).
func (a *applier) endTx(err error) {
	t := &a.trace
	if t.span == nil {
		return
	}
	a.mu.Lock()
	t.span.SetAttributes(attribute.Int("cachekeeper.jobs", t.jobs), attribute.StringSlice("cachekeeper.job_ids", t.ids),
		attribute.String("cachekeeper.job_kinds", tasks.KindInvalidate+","+tasks.KindInvalidateTag+","+tasks.KindInvalidatePattern))
	a.mu.Unlock()
	if err != nil {
		t.span.RecordError(err)
		t.span.SetStatus(codes.Error, err.Error())
	}
	t.span.End()
	t.ctx, t.span, t.jobs, t.ids = nil, nil, 0, nil
}
