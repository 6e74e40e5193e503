package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachekeeper/cachekeeper/internal/tracing"
)

func TestSetupFromEnv(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		env  map[string]string
		on   bool
		bad  bool
	}{
		{"unset is off", map[string]string{}, false, false},
		{"none is off", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false, false},
		{"sdk disabled", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, false, false},
		{"otlp http", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, false},
		{"otlp grpc", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, false},
		{"traces protocol wins", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, true, false},
		{"zipkin refused", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
		{"http/json refused", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, shutdown, err := tracing.Setup(ctx, func(k string) string { return c.env[k] }, "test")
			if c.bad != (err != nil) || (err != nil && !errors.Is(err, tracing.ErrConfig)) {
				t.Fatalf("err = %v, want bad=%v wrapping ErrConfig", err, c.bad)
			}
			if c.on != (tp != nil) {
				t.Fatalf("provider %v, want on=%v", tp, c.on)
			}
			// Nothing was recorded, so shutting down sends nothing.
			if err := shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		})
	}
}
