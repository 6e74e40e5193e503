package tasks

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/hibiken/asynq"
)

// ErrUnknownName is matched (errors.Is) by the *NameError of a Client built
// WithQueues or WithCaches when a job names a queue or a cache the workers
// do not serve. Such an error also matches ErrInvalidPayload: nothing was
// sent.
var ErrUnknownName = errors.New("unknown name")

// NameError says which queue or cache name is unknown and which are valid.
type NameError struct {
	// What is "queue" or "cache".
	What string
	Name string
	// Known are the valid names, sorted.
	Known []string
}

func (e *NameError) Error() string {
	if e.What == "queue" {
		return fmt.Sprintf("queue %q is not served by the workers (queues: %s)", e.Name, strings.Join(e.Known, ", "))
	}
	known := "none are configured"
	if len(e.Known) > 0 {
		known = "caches: " + strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("cache %q is not configured (%s)", e.Name, known)
}

// Is matches ErrUnknownName and ErrInvalidPayload.
func (e *NameError) Is(target error) bool {
	return target == ErrUnknownName || target == ErrInvalidPayload
}

// WithQueues makes the client refuse a job whose queue (the kind's default
// or a Queue option) is not one of names: the queues the workers serve
// (worker.queues in their config; the fast lane is one of them).
//
// Without it the client sends a job to any queue it is told, and a job on a
// queue no worker serves waits there forever with no error anywhere: asynq
// creates queues on first use. config.Config.ClientOptions gives this option
// and WithCaches from the workers' configuration.
func WithQueues(names ...string) ClientOption {
	return func(c *Client) { c.queues = sortedSet(names) }
}

// WithCaches makes the client refuse a job (and a WarmCache call) naming a
// cache that is not one of names (caches in the workers' config).
//
// Without it a misspelt cache name is accepted, and the job is archived
// later by the worker (or, for WarmCache, its ids wait until a worker
// reports them as unserved).
func WithCaches(names ...string) ClientOption {
	return func(c *Client) { c.caches = sortedSet(names) }
}

// WithOwnedKeys names Redis keys the workers own outside their key prefix,
// such as an inbox.key of "jobs:inbox": the client refuses jobs that would
// delete, expire or rewrite them (see Guard).
func WithOwnedKeys(keys ...string) ClientOption {
	return func(c *Client) { c.owned = append(c.owned, keys...) }
}

func sortedSet(names []string) []string {
	out := slices.Clone(names)
	sort.Strings(out)
	return slices.Compact(out)
}

// Check reports whether Enqueue would accept p with opts, without sending
// anything: the payload validates, names no internal key (Guard) and, with
// WithQueues and WithCaches, only queues and caches the workers serve. The
// error wraps ErrInvalidPayload.
func (c *Client) Check(p Payload, opts ...Option) error {
	if err := c.guard.Check(p); err != nil {
		return err
	}
	return c.checkNames(p, opts)
}

// NewOfflineClient returns a Client that only checks (Check): every method
// that would reach Redis fails. Use it to refuse a bad job before
// connecting, for example in a command-line tool.
func NewOfflineClient(opts ...ClientOption) (*Client, error) {
	c := &Client{keys: keys.Default(), offline: true}
	for _, o := range opts {
		o(c)
	}
	if c.keyErr != nil {
		return nil, fmt.Errorf("tasks: %w", c.keyErr)
	}
	c.guard = &Guard{rule: c.keys.Rule(c.owned...)}
	return c, nil
}

// checkNames refuses p (sent with opts) when WithQueues or WithCaches is set
// and it names another queue or cache.
func (c *Client) checkNames(p Payload, opts []Option) error {
	if c.queues != nil {
		info, _ := kindInfo(p)
		q := info.Queue
		for _, o := range opts {
			if o.Type() == asynq.QueueOpt {
				q, _ = o.Value().(string)
			}
		}
		// A declared kind's own queue is served by the workers that handle
		// it, whatever their worker.queues.
		_, declared := p.(Declared)
		if !slices.Contains(c.queues, q) && !(declared && q == info.Queue) {
			return &NameError{What: "queue", Name: q, Known: c.queues}
		}
	}
	if n, ok := p.(cacheNamed); ok {
		return c.checkCache(n.cacheName())
	}
	return nil
}

func (c *Client) checkCache(name string) error {
	if c.caches == nil || name == "" || slices.Contains(c.caches, name) {
		return nil
	}
	return &NameError{What: "cache", Name: name, Known: c.caches}
}

// cacheNamed is implemented by the payloads that name a cache.
type cacheNamed interface{ cacheName() string }

func (a WarmArgs) cacheName() string       { return a.Cache }
func (a WarmAllArgs) cacheName() string    { return a.Cache }
func (a InvalidateArgs) cacheName() string { return a.Cache }
