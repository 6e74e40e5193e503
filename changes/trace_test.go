package changes_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
)

// With a tracer provider, each transaction that changes a followed table
// is one span, parent of the producer spans of the jobs it enqueued, and
// it lists their task ids.
func TestTransactionSpanParentsItsJobs(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	b := setup(t, func(_ *config.Config, sc *changes.Config) { sc.TracerProvider = tp })
	b.seed(t, 3)
	b.start(t)
	mustExec(t, b.db, "UPDATE users SET email = email || 'x' WHERE id IN (1, 2)")
	mustExec(t, b.db, "UPDATE users SET email = email || 'y' WHERE id = 3")
	var txs []sdktrace.ReadOnlySpan
	waitFor(t, 20*time.Second, func() bool {
		txs = nil
		for _, s := range rec.Ended() {
			if s.Name() == "changes transaction" {
				txs = append(txs, s)
			}
		}
		return len(txs) >= 2
	})
	for _, tx := range txs[:2] {
		var ids []string
		for _, a := range tx.Attributes() {
			if a.Key == attribute.Key("cachekeeper.job_ids") {
				ids = a.Value.AsStringSlice()
			}
		}
		if len(ids) != 1 {
			t.Fatalf("transaction span lists job ids %v; want the one invalidation it enqueued", ids)
		}
		var children []string
		for _, s := range rec.Ended() {
			if s.Parent().SpanID() == tx.SpanContext().SpanID() {
				children = append(children, s.Name())
			}
		}
		if !slices.Contains(children, "enqueue cache:invalidate") {
			t.Fatalf("children of the transaction span: %v; want the producer span of its job", children)
		}
		t.Logf("transaction span %s: jobs %v, children %v", tx.SpanContext().SpanID(), ids, children)
	}
}
