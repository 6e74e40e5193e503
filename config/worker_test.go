package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
)

func TestFastLaneDefaults(t *testing.T) {
	t.Parallel()
	fl := config.Default().Worker.FastLane
	if fl.Queue != "critical" || fl.Concurrency < 1 || fl.Wait <= 0 || fl.TaskCheckInterval <= 0 {
		t.Fatalf("default fast lane = %+v, want critical with a wait", fl)
	}
}

func TestFastLaneValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		adjust func(*config.WorkerConfig)
		want   string // "" = valid
	}{
		{"defaults", func(*config.WorkerConfig) {}, ""},
		{"off", func(w *config.WorkerConfig) { w.FastLane.Queue = ""; w.Queues = map[string]int{"jobs": 1} }, ""},
		{"wait off", func(w *config.WorkerConfig) { w.FastLane.Wait = 0 }, ""},
		{"unknown queue", func(w *config.WorkerConfig) { w.Queues = map[string]int{"default": 1, "low": 1} },
			`worker.fast_lane.queue "critical" is not one of worker.queues (default, low)`},
		{"concurrency", func(w *config.WorkerConfig) { w.FastLane.Concurrency = 0 }, "worker.fast_lane.concurrency"},
		{"negative wait", func(w *config.WorkerConfig) { w.FastLane.Wait = -time.Second }, "worker.fast_lane.wait"},
		{"tiny wait", func(w *config.WorkerConfig) { w.FastLane.Wait = time.Millisecond }, "between 10ms and 10s"},
		{"long wait", func(w *config.WorkerConfig) { w.FastLane.Wait = time.Minute }, "between 10ms and 10s"},
		{"interval", func(w *config.WorkerConfig) { w.FastLane.TaskCheckInterval = 0 }, "worker.fast_lane.task_check_interval"},
		{"negative backoff", func(w *config.WorkerConfig) { w.EmptyQueueBackoff = -time.Millisecond }, "worker.empty_queue_backoff"},
		{"backoff off", func(w *config.WorkerConfig) { w.EmptyQueueBackoff = 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.adjust(&cfg.Worker)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrInvalid)):
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestFastLaneYAML(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	err := config.Parse([]byte("worker:\n  fast_lane:\n    queue: \"\"\n    wait: 250ms\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.FastLane.Queue != "" || cfg.Worker.FastLane.Wait != 250*time.Millisecond || cfg.Worker.FastLane.Concurrency != 2 {
		t.Fatalf("fast lane = %+v", cfg.Worker.FastLane)
	}
	if err := config.Parse([]byte("worker:\n  fast_lane:\n    qeue: x\n"), &cfg); err == nil || !strings.Contains(err.Error(), "qeue") {
		t.Fatalf("misspelt field: err = %v", err)
	}
}

func TestUIConfig(t *testing.T) {
	t.Parallel()
	if w := config.Default().Worker; w.UI || w.UIReadOnly {
		t.Fatalf("default ui = %v, ui_read_only = %v; want both off", w.UI, w.UIReadOnly)
	}
	cfg := config.Default()
	if err := config.Parse([]byte("worker:\n  ui: true\n  ui_read_only: true\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Worker.UI || !cfg.Worker.UIReadOnly {
		t.Fatalf("ui = %v, ui_read_only = %v; want both on", cfg.Worker.UI, cfg.Worker.UIReadOnly)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("ui with the default metrics_addr: %v", err)
	}

	if err := config.Parse([]byte("worker:\n  metrics_addr: \"\"\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil || !errors.Is(err, config.ErrInvalid) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "worker.ui needs worker.metrics_addr") || !strings.Contains(err.Error(), "turn worker.ui off") {
		t.Fatalf("ui without metrics_addr: err = %v, want one line saying worker.ui needs worker.metrics_addr and how to fix it", err)
	}
	cfg.Worker.UI = false
	if err := cfg.Validate(); err != nil {
		t.Fatalf("ui off without metrics_addr: %v", err)
	}
}

func TestRecoveryAndDelayedSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		recoverAfter, delayed time.Duration
		ok                    bool
	}{
		{10 * time.Second, 250 * time.Millisecond, true},
		{0, 250 * time.Millisecond, true}, // recovery left to asynq
		{5 * time.Second, 250 * time.Millisecond, false},
		{10 * time.Second, time.Millisecond, false},
		{10 * time.Second, 2 * time.Minute, false},
	} {
		c := config.Default()
		c.Worker.RecoverAfter, c.Worker.DelayedTaskCheckInterval = tc.recoverAfter, tc.delayed
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("recover_after %s, delayed_task_check_interval %s: %v, want ok=%v", tc.recoverAfter, tc.delayed, err, tc.ok)
		}
	}
}
