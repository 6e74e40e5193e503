package config

import (
	"fmt"
	"time"
)

// WorkerConfig shapes the worker process.
type WorkerConfig struct {
	// Concurrency is the number of jobs run at once in this process, spread
	// over Servers asynq servers.
	Concurrency int `yaml:"concurrency"`
	// Servers is the number of asynq servers in the process. asynq dequeues
	// with one goroutine per server, so more servers move more jobs per second.
	Servers int `yaml:"servers"`
	// Queues maps queue name to weight (critical=6, default=3, low=1).
	Queues map[string]int `yaml:"queues"`
	// StrictPriority drains higher-weight queues first.
	StrictPriority bool `yaml:"strict_priority"`
	// ShutdownTimeout is how long running jobs get to finish on stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// TaskCheckInterval is how often an idle server polls for new jobs.
	TaskCheckInterval time.Duration `yaml:"task_check_interval"`
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string `yaml:"metrics_addr"`
}

func (w *WorkerConfig) setDefaults() {
	w.Concurrency = 20
	w.Servers = 4
	w.Queues = map[string]int{"critical": 6, "default": 3, "low": 1}
	w.ShutdownTimeout = 30 * time.Second
	w.TaskCheckInterval = time.Second
	w.MetricsAddr = ":9090"
}

func (w *WorkerConfig) validate() error {
	if w.Concurrency < 1 {
		return fmt.Errorf("worker.concurrency must be at least 1, got %d", w.Concurrency)
	}
	if w.Servers < 1 || w.Servers > 64 {
		return fmt.Errorf("worker.servers must be between 1 and 64, got %d", w.Servers)
	}
	if w.Servers > w.Concurrency {
		return fmt.Errorf("worker.servers (%d) must not exceed worker.concurrency (%d): each server needs at least one slot", w.Servers, w.Concurrency)
	}
	if len(w.Queues) == 0 {
		return fmt.Errorf("worker.queues must name at least one queue, e.g. {critical: 6, default: 3, low: 1}")
	}
	for q, weight := range w.Queues {
		if q == "" {
			return fmt.Errorf("worker.queues has an empty queue name")
		}
		if weight < 1 {
			return fmt.Errorf("worker.queues.%s weight must be at least 1, got %d", q, weight)
		}
	}
	if err := positive("worker.shutdown_timeout", w.ShutdownTimeout); err != nil {
		return err
	}
	if w.TaskCheckInterval < time.Millisecond {
		return fmt.Errorf("worker.task_check_interval must be at least 1ms, got %s", w.TaskCheckInterval)
	}
	return nil
}
