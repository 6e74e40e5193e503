package cli

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cachekeeper/cachekeeper/internal/tracing"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// startTracing turns tracing on when the OTEL_* variables ask for it (see
// internal/tracing): it returns the provider (nil when off) and the
// function that flushes the spans, to defer.
func startTracing(ctx context.Context, io IO, service string, logger *slog.Logger) (trace.TracerProvider, func(), error) {
	tp, shutdown, err := tracing.Setup(ctx, io.Env, service)
	if err != nil {
		if errors.Is(err, tracing.ErrConfig) {
			return nil, func() {}, usagef("%v", err)
		}
		return nil, func() {}, err
	}
	if tp == nil {
		return nil, func() {}, nil
	}
	if logger != nil {
		logger.Info("tracing on: spans go to the OTLP collector", slog.String("service", service))
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil && logger != nil {
			logger.Warn("flushing the last spans failed", slog.String("error", err.Error()))
		}
	}, nil
}

// traced makes svc's client record producer spans with tp.
func (s *services) traced(tp trace.TracerProvider) {
	if tp == nil {
		return
	}
	s.client = tasks.NewClientFromRedis(s.redis, append(s.cfg.ClientOptions(), tasks.WithTracerProvider(tp))...)
}
