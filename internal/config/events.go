package config

import (
	"errors"
	"fmt"
)

// EventsConfig sets where cache-change events are published.
type EventsConfig struct {
	// Channel is the pub/sub channel (default "cachekeeper:events").
	Channel string `yaml:"channel"`
	// MaxKeys caps the keys listed in one event; the total is always given.
	MaxKeys int `yaml:"max_keys"`
	// Disabled turns publishing off.
	Disabled bool `yaml:"disabled,omitempty"`
}

func (e *EventsConfig) setDefaults(prefix string) {
	e.Channel = prefix + "events"
	e.MaxKeys = 100
}

func (e *EventsConfig) validate() error {
	if e.Channel == "" && !e.Disabled {
		return errors.New("events.channel must not be empty (or set events.disabled: true)")
	}
	if e.MaxKeys < 0 {
		return fmt.Errorf("events.max_keys must be 0 or positive, got %d", e.MaxKeys)
	}
	return nil
}

// InboxConfig sets the Redis list that producers in any language push jobs to.
type InboxConfig struct {
	// Key is the list (default "cachekeeper:inbox").
	Key string `yaml:"key"`
	// Disabled stops the worker from watching the inbox.
	Disabled bool `yaml:"disabled,omitempty"`
}

func (i *InboxConfig) setDefaults(prefix string) { i.Key = prefix + "inbox" }

func (i *InboxConfig) validate() error {
	if i.Key == "" && !i.Disabled {
		return errors.New("inbox.key must not be empty (or set inbox.disabled: true)")
	}
	return nil
}
