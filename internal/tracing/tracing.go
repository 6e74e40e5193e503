// Package tracing turns OpenTelemetry tracing on from the standard OTEL_*
// environment variables, and holds the spans cachekeeper makes around the
// work of a job: Redis commands (a go-redis hook) and SQL queries.
//
// Tracing is off unless OTEL_TRACES_EXPORTER=otlp. Then
// OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) picks
// http/protobuf (the default) or grpc, and OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) the collector; OTEL_SERVICE_NAME
// names the service. The exporter and the SDK read the other standard
// variables themselves (OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER,
// OTEL_BSP_SCHEDULE_DELAY...).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrConfig wraps every error in the OTEL_* settings.
var ErrConfig = errors.New("tracing settings")

// Setup returns the tracer provider the OTEL_* variables (read with env)
// ask for, and the function that flushes and stops it; a nil provider
// when tracing is off. service is the default service name.
func Setup(ctx context.Context, env func(string) string, service string) (trace.TracerProvider, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		return nil, noop, nil
	}
	switch exp := strings.TrimSpace(env("OTEL_TRACES_EXPORTER")); exp {
	case "", "none":
		return nil, noop, nil
	case "otlp":
	default:
		return nil, noop, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q is not supported: use otlp (or none)", ErrConfig, exp)
	}
	protocol := first(env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), env("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	var exporter sdktrace.SpanExporter
	var err error
	switch protocol {
	case "http/protobuf":
		var opts []otlptracehttp.Option
		if u := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		} else if u := env("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(u, "/")+"/v1/traces"))
		}
		exporter, err = otlptracehttp.New(ctx, opts...)
	case "grpc":
		var opts []otlptracegrpc.Option
		if u := first(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT")); u != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(u))
		}
		exporter, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, noop, fmt.Errorf("%w: OTEL_EXPORTER_OTLP_PROTOCOL=%q is not supported: use http/protobuf or grpc", ErrConfig, protocol)
	}
	if err != nil {
		return nil, noop, fmt.Errorf("%w: OTLP exporter: %v", ErrConfig, err)
	}
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", first(env("OTEL_SERVICE_NAME"), service))))
	if err != nil {
		res = resource.NewSchemaless(attribute.String("service.name", first(env("OTEL_SERVICE_NAME"), service)))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
