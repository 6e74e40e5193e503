package tracing

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// recording reports whether ctx holds a span being recorded: spans are
// made only inside a traced job (or transaction), so the hooks cost one
// context lookup otherwise.
func recording(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// RedisHook returns a go-redis hook that makes a client span for each
// command and pipeline run under a recording span. Arguments are not
// recorded (they may hold cached values); the command names are.
func RedisHook(tracer trace.Tracer) redis.Hook { return redisHook{tracer} }

type redisHook struct{ tracer trace.Tracer }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !recording(ctx) {
			return next(ctx, cmd)
		}
		name := strings.ToUpper(cmd.Name())
		ctx, span := h.tracer.Start(ctx, "redis "+name, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", name)))
		err := next(ctx, cmd)
		end(span, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !recording(ctx) {
			return next(ctx, cmds)
		}
		names := make([]string, 0, min(len(cmds), 5))
		for i, c := range cmds {
			if i == 5 {
				names = append(names, "...")
				break
			}
			names = append(names, strings.ToUpper(c.Name()))
		}
		ctx, span := h.tracer.Start(ctx, "redis pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", "PIPELINE"),
				attribute.Int("db.operation.batch.size", len(cmds)), attribute.String("cachekeeper.redis.commands", strings.Join(names, " "))))
		err := next(ctx, cmds)
		end(span, err)
		return err
	}
}

// DB is what the cache specs read with (cachespec.DB).
type DB interface {
	sqlx.QueryerContext
	Rebind(query string) string
	DriverName() string
}

// TraceDB wraps db so that each query run under a recording span gets a
// client span with the query text (the statement, never its arguments).
func TraceDB(db DB, tracer trace.Tracer) DB { return tracedDB{DB: db, tracer: tracer} }

type tracedDB struct {
	DB
	tracer trace.Tracer
}

func (d tracedDB) start(ctx context.Context, query string) (context.Context, trace.Span) {
	op, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	return d.tracer.Start(ctx, "sql "+strings.ToUpper(op), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", d.DriverName()), attribute.String("db.query.text", query)))
}

func (d tracedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if !recording(ctx) {
		return d.DB.QueryContext(ctx, query, args...)
	}
	ctx, span := d.start(ctx, query)
	rows, err := d.DB.QueryContext(ctx, query, args...)
	end(span, err) // the span covers the query, not the reading of its rows
	return rows, err
}

func (d tracedDB) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	if !recording(ctx) {
		return d.DB.QueryxContext(ctx, query, args...)
	}
	ctx, span := d.start(ctx, query)
	rows, err := d.DB.QueryxContext(ctx, query, args...)
	end(span, err)
	return rows, err
}

func (d tracedDB) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	if !recording(ctx) {
		return d.DB.QueryRowxContext(ctx, query, args...)
	}
	ctx, span := d.start(ctx, query)
	row := d.DB.QueryRowxContext(ctx, query, args...)
	end(span, row.Err())
	return row
}
