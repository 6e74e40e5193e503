package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPanicBecomesTaskErrorWithStackLogged(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	mux.Use(instrument(logger, m), recoverPanics(logger))
	mux.HandleFunc("boom", func(context.Context, *asynq.Task) error { panic("kaboom") })
	mux.HandleFunc("ok", func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc("bad", func(context.Context, *asynq.Task) error { return fmt.Errorf("nope: %w", asynq.SkipRetry) })

	err = mux.ProcessTask(context.Background(), asynq.NewTask("boom", nil))
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("err = %v, want ErrPanic with the panic value", err)
	}
	if !strings.Contains(logs.String(), "handler panicked") || !strings.Contains(logs.String(), "middleware_test.go") {
		t.Errorf("stack not logged: %s", logs.String())
	}
	if err := mux.ProcessTask(context.Background(), asynq.NewTask("ok", nil)); err != nil {
		t.Fatal(err)
	}
	_ = mux.ProcessTask(context.Background(), asynq.NewTask("bad", nil))
	// Outside asynq the retry budget reads as 0, so a failure is final.
	for kind, outcome := range map[string]string{"boom": OutcomeFailed, "ok": OutcomeSuccess, "bad": OutcomeInvalid} {
		if got := testutil.ToFloat64(m.processed.WithLabelValues(kind, outcome)); got != 1 {
			t.Errorf("%s/%s counter = %v, want 1", kind, outcome, got)
		}
	}
	if got := testutil.CollectAndCount(m.duration); got != 3 {
		t.Errorf("duration series = %d, want 3 kinds", got)
	}
}

func TestSuccessIsNotLoggedAtInfo(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, _ := NewMetrics(nil)
	h := instrument(logger, m)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	for i := 0; i < 10; i++ {
		_ = h.ProcessTask(context.Background(), asynq.NewTask("ok", nil))
	}
	if logs.Len() != 0 {
		t.Fatalf("successful tasks logged at info: %s", logs.String())
	}
	h = instrument(logger, m)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return errors.New("db down") }))
	_ = h.ProcessTask(context.Background(), asynq.NewTask("bad", nil))
	for _, want := range []string{"kind=bad", "outcome=failed", `error="db down"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("failure log %q lacks %s", logs.String(), want)
		}
	}
}
