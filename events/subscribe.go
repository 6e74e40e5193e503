package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// TypeMissed is the Type of the synthetic event Subscribe delivers after it
// re-subscribed following a dropped connection: events published while it was
// disconnected are lost (pub/sub does not replay), so the receiver should drop
// every in-process copy it keeps. The event also has Missed set.
const TypeMissed = "events.missed"

// Subscriber defaults, used when a field is zero.
const (
	DefaultHealthCheck = 30 * time.Second
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
)

// Subscriber receives events and survives dropped connections. The zero
// value with Client set is ready to use.
type Subscriber struct {
	// Client is the Redis connection (required). On a *redis.ClusterClient
	// the subscription is sharded (SSUBSCRIBE, Redis 7 or later), matching
	// the worker's SPUBLISH.
	Client redis.UniversalClient
	// Channel is the pub/sub channel (default DefaultChannel); use the
	// worker's events.channel setting.
	Channel string
	// Logger receives connection failures and undecodable messages
	// (default slog.Default()).
	Logger *slog.Logger
	// HealthCheck is how long the connection may stay silent before a PING
	// is sent; with no reply within another HealthCheck the connection is
	// taken as dead and replaced (default DefaultHealthCheck).
	HealthCheck time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults DefaultMinBackoff and DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// OnSubscribed, when set, is called each time the subscription is
	// confirmed by Redis (first time and after every reconnection), before
	// any event received on it. Events published before the first call
	// are not delivered.
	OnSubscribed func()
}

// Subscribe delivers the events published on DefaultChannel to fn until ctx
// ends; see Subscriber.Run.
func Subscribe(ctx context.Context, rdb redis.UniversalClient, fn func(Event)) error {
	return (&Subscriber{Client: rdb}).Run(ctx, fn)
}

// Run subscribes and calls fn with each event, one at a time, until ctx ends;
// it then returns nil. It returns an error only for an invalid Subscriber.
//
// When the connection drops (Redis restart, network failure, the server
// closing a slow subscriber), Run reconnects with backoff and, once it is
// subscribed again, calls fn with Event{Type: TypeMissed, Missed: true}
// before any newer event: events published in between are lost. A receiver
// keeping in-process copies should then drop them all; since the new
// subscription is already active when it learns this, no later change can
// slip past it. The first subscription is not reported as a gap.
//
// fn runs on Run's goroutine: a slow fn delays the next events, and if it
// falls far enough behind, Redis closes the connection (client output buffer
// limit), which Run reports as a gap like any other disconnection.
func (s *Subscriber) Run(ctx context.Context, fn func(Event)) error {
	if s.Client == nil {
		return errors.New("events: Subscriber.Client is required")
	}
	if fn == nil {
		return errors.New("events: nil event callback")
	}
	cfg := s.withDefaults()
	if cfg.MinBackoff > cfg.MaxBackoff {
		return fmt.Errorf("events: MinBackoff %s must not exceed MaxBackoff %s", cfg.MinBackoff, cfg.MaxBackoff)
	}
	r := &receiver{cfg: cfg, fn: fn}
	backoff := cfg.MinBackoff
	for {
		subscribed, err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			backoff = cfg.MinBackoff
		}
		cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "events: subscription lost; reconnecting",
			slog.String("channel", cfg.Channel), slog.Duration("backoff", backoff), slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

func (s *Subscriber) withDefaults() Subscriber {
	c := *s
	if c.Channel == "" {
		c.Channel = DefaultChannel
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HealthCheck <= 0 {
		c.HealthCheck = DefaultHealthCheck
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	return c
}

// receiver is the state of one Run across its connections.
type receiver struct {
	cfg Subscriber
	fn  func(Event)
	// everSubscribed is set once the first subscription was confirmed;
	// every later confirmation follows a gap.
	everSubscribed bool
}

// session runs one PubSub connection until it fails or ctx ends. It reports
// whether the subscription was confirmed at least once.
func (r *receiver) session(ctx context.Context) (subscribed bool, err error) {
	sharded := false
	var ps *redis.PubSub
	if _, ok := r.cfg.Client.(*redis.ClusterClient); ok {
		sharded = true
		ps = r.cfg.Client.SSubscribe(ctx)
		err = ps.SSubscribe(ctx, r.cfg.Channel)
	} else {
		ps = r.cfg.Client.Subscribe(ctx)
		err = ps.Subscribe(ctx, r.cfg.Channel)
	}
	// Closing the PubSub is what interrupts a blocked receive when ctx ends.
	stop := make(chan struct{})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = ps.Close()
	}()
	defer func() { close(stop); <-closed }()
	if err != nil {
		return false, fmt.Errorf("subscribe to %q: %w", r.cfg.Channel, err)
	}

	pingSent := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, r.cfg.HealthCheck)
		if err != nil {
			if ctx.Err() != nil {
				return subscribed, ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return subscribed, err
			}
			if pingSent {
				return subscribed, fmt.Errorf("no reply to PING within %s", r.cfg.HealthCheck)
			}
			if err := ps.Ping(ctx); err != nil {
				return subscribed, fmt.Errorf("ping: %w", err)
			}
			pingSent = true
			continue
		}
		pingSent = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Channel != r.cfg.Channel {
				continue
			}
			switch m.Kind {
			case "subscribe", "ssubscribe":
				subscribed = true
				if r.cfg.OnSubscribed != nil {
					r.cfg.OnSubscribed()
				}
				if r.everSubscribed {
					r.fn(Event{Type: TypeMissed, Missed: true, Time: time.Now().UTC()})
				}
				r.everSubscribed = true
			default:
				// A sharded channel is unsubscribed by the server when its
				// slot moves to another master: subscribe again there.
				return subscribed, fmt.Errorf("server ended the subscription (%s)", m.Kind)
			}
		case *redis.Message:
			if !sharded && m.Channel != r.cfg.Channel {
				continue
			}
			e, err := Decode([]byte(m.Payload))
			if err != nil {
				r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "events: message is not an event; ignored",
					slog.String("channel", m.Channel), slog.String("error", err.Error()))
				continue
			}
			r.fn(e)
		case *redis.Pong:
		}
	}
}

// Decode parses one event as published on the channel.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("events: decode: %w", err)
	}
	return e, nil
}
