package worker

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hibiken/asynq"
)

// Option adjusts a Worker built by New.
type Option func(*Worker) error

// WithHandler registers h for kind, behind the same middleware (logging,
// metrics, panic recovery) as the built-in handlers. It is for kinds of the
// caller's own, such as the no-op kind of `cachekeeper bench`; a kind the
// worker already handles is an error.
func WithHandler(kind string, h asynq.Handler) Option {
	return func(w *Worker) error {
		if kind == "" {
			return errors.New("worker.WithHandler: kind is empty; pass the task type name, such as \"app:resize\"")
		}
		if h == nil {
			return fmt.Errorf("worker.WithHandler(%q): handler is nil", kind)
		}
		if slices.Contains(w.kinds, kind) {
			return fmt.Errorf("worker.WithHandler(%q): the worker already handles this kind; pick another name", kind)
		}
		w.mux.Handle(kind, h)
		w.kinds = append(w.kinds, kind)
		return nil
	}
}

func (w *Worker) apply(opts []Option) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(w); err != nil {
			return err
		}
	}
	return nil
}
