package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// The middleware's cost per successful job, at info level (the default):
// a few hundred nanoseconds against the tens of microseconds asynq spends
// on a job's two Redis round trips.
func BenchmarkMiddlewareSuccess(b *testing.B) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error { return nil })
	wrapped := instrument(logger, m)(recoverPanics(logger)(mux)) // as New does
	bare := asynq.NewServeMux()
	bare.HandleFunc("noop", func(context.Context, *asynq.Task) error { return nil })
	task := asynq.NewTask("noop", nil)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		h    asynq.Handler
	}{{"bare", bare}, {"middleware", wrapped}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.h.ProcessTask(ctx, task); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
