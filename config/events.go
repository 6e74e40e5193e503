package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
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
	e.Channel = defaultKeys(prefix).EventsChannel()
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
	// Key is the list (default "cachekeeper:inbox"). Its processing and
	// dead-letter lists are "{<key>}:processing" and "{<key>}:dead".
	Key string `yaml:"key"`
	// Disabled stops the worker from watching the inbox.
	Disabled bool `yaml:"disabled,omitempty"`
	// BlockTimeout is how long one BLMOVE waits for an entry (default 5s):
	// an idle bridge sends three commands per timeout. The wait ends at once
	// when an entry arrives or the worker stops.
	BlockTimeout time.Duration `yaml:"block_timeout"`
	// RecoverAfter is how long an entry may sit in the processing list
	// before a running worker takes it for abandoned (its worker crashed)
	// and enqueues it; entries found there when a worker starts are taken at
	// once (default 1m).
	RecoverAfter time.Duration `yaml:"recover_after"`
	// DeadMax caps the dead-letter list: when an entry is dead-lettered the
	// list is trimmed to its newest DeadMax entries (default 10000; 0 keeps
	// every entry). `cachekeeper inbox dead` lists, replays and purges it.
	DeadMax int `yaml:"dead_max"`
	// MaxEntryBytes is the largest entry taken (default 1 MiB): a larger
	// one is dead-lettered unparsed, with its size and its first 16 KiB.
	// Each dead letter keeps at most 16 KiB of its entry, so the list
	// stays within about dead_max times 16 KiB.
	MaxEntryBytes int `yaml:"max_entry_bytes"`
	// BatchSize is the most entries moved from the inbox per round trip
	// (default 100).
	BatchSize int `yaml:"batch_size"`
	// Enqueuers is how many batches are enqueued at once, each in one
	// pipeline, and how many entries that go one at a time (delayed or
	// coalesced ones) are (default 8).
	// Entries are therefore not enqueued in the order they were pushed.
	Enqueuers int `yaml:"enqueuers"`
}

func (i *InboxConfig) setDefaults(prefix string) {
	i.Key = defaultKeys(prefix).Inbox()
	i.BlockTimeout = 5 * time.Second
	i.RecoverAfter = time.Minute
	i.DeadMax = DefaultInboxDeadMax
	i.MaxEntryBytes = DefaultInboxMaxEntryBytes
	i.BatchSize = 100
	i.Enqueuers = 8
}

// DefaultInboxDeadMax is inbox.dead_max's default.
const DefaultInboxDeadMax = 10000

// DefaultInboxMaxEntryBytes is inbox.max_entry_bytes' default (1 MiB).
const DefaultInboxMaxEntryBytes = 1 << 20

func (i *InboxConfig) validate() error {
	if i.Disabled {
		return nil
	}
	if i.Key == "" {
		return errors.New("inbox.key must not be empty (or set inbox.disabled: true)")
	}
	if i.BlockTimeout < 10*time.Millisecond || i.BlockTimeout > time.Minute {
		return fmt.Errorf("inbox.block_timeout must be between 10ms and 1m, got %s", i.BlockTimeout)
	}
	if i.RecoverAfter < time.Second {
		return fmt.Errorf("inbox.recover_after must be at least 1s, got %s", i.RecoverAfter)
	}
	if i.DeadMax < 0 {
		return fmt.Errorf("inbox.dead_max must be 0 (no cap) or positive, got %d", i.DeadMax)
	}
	if i.MaxEntryBytes < 1024 || i.MaxEntryBytes > 512<<20 {
		return fmt.Errorf("inbox.max_entry_bytes must be between 1024 and 536870912 (512 MiB), got %d", i.MaxEntryBytes)
	}
	if i.BatchSize < 1 || i.BatchSize > 10000 {
		return fmt.Errorf("inbox.batch_size must be between 1 and 10000, got %d", i.BatchSize)
	}
	if i.Enqueuers < 1 || i.Enqueuers > 1000 {
		return fmt.Errorf("inbox.enqueuers must be between 1 and 1000, got %d", i.Enqueuers)
	}
	return nil
}

// defaultKeys names the defaults of prefix's layout (Default's prefix is
// always valid; Validate checks a configured one).
func defaultKeys(prefix string) keys.Keys {
	k, err := keys.New(prefix)
	if err != nil {
		return keys.Default()
	}
	return k
}
