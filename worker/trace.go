package worker

import (
	"context"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cachekeeper/cachekeeper/internal/cachespec"
	"github.com/cachekeeper/cachekeeper/internal/tracing"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// setupTracing makes the worker trace its jobs with Deps.TracerProvider:
// a consumer span per job, child of the producer's span carried in the
// task's headers (tasks.HeaderTraceParent), with child spans for the Redis
// commands (a hook on Deps.Redis) and SQL queries it runs. Without a
// provider nothing is traced.
func (w *Worker) setupTracing() {
	w.sqlDB = nil
	if w.deps.DB != nil {
		w.sqlDB = w.deps.DB
	}
	if w.deps.TracerProvider == nil {
		return
	}
	w.tracer = w.deps.TracerProvider.Tracer(tasks.TracerName)
	w.deps.Redis.AddHook(tracing.RedisHook(w.tracer))
	if w.deps.DB != nil {
		w.sqlDB = tracing.TraceDB(w.deps.DB, w.tracer)
	}
}

// traceJobs runs each job in a consumer span.
func (w *Worker) traceJobs(next asynq.Handler) asynq.Handler {
	if w.tracer == nil {
		return next
	}
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if h := t.Headers(); len(h) > 0 {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(h))
		}
		id, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		retry, _ := asynq.GetRetryCount(ctx)
		ctx, span := w.tracer.Start(ctx, "job "+t.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "asynq"), attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", queue), attribute.String("messaging.message.id", id),
				attribute.String("cachekeeper.kind", t.Type()), attribute.Int("cachekeeper.retry", retry)))
		err := next.ProcessTask(ctx, t)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.String("cachekeeper.outcome", outcome(ctx, err)))
		}
		span.End()
		return err
	})
}

// queryDB is the database the cache specs read with: traced when tracing
// is on.
func (w *Worker) queryDB() cachespec.DB {
	if w.sqlDB == nil {
		return nil
	}
	return w.sqlDB
}
