// Package events carries cache-change events from the worker to application
// instances over Redis pub/sub, so that an instance can drop its own
// in-process copies of data the worker changed.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultChannel is the pub/sub channel events go to unless configured.
const DefaultChannel = "cachekeeper:events" // keys.Default().EventsChannel(); a test keeps them equal

// Event types.
const (
	TypeWarmed         = "cache.warmed"
	TypeInvalidated    = "cache.invalidated"
	TypeDeleted        = "cache.deleted" // the row is gone from the database
	TypeSessionRevoked = "session.revoked"
)

// Event is one change the worker made. Keys is capped (see KeyCount for the
// total); Missed is set only on the synthetic event Subscribe delivers after
// a reconnect, meaning events may have been lost.
//
// Keys and IDs are capped by the publisher (events.max_keys); KeyCount is
// always the total. A receiver drops its copies of Keys and of the IDs of
// Cache; when the lists were capped (KeyCount larger than len(Keys) or
// len(IDs)), it drops every copy of Cache, or of the keys matching Pattern,
// or carrying Tag, since it cannot tell which ones changed.
type Event struct {
	Type     string   `json:"type"`
	Cache    string   `json:"cache,omitempty"`
	IDs      []string `json:"ids,omitempty"`
	Keys     []string `json:"keys,omitempty"`
	KeyCount int      `json:"key_count"`
	// Pattern is the glob of a pattern invalidation (Redis MATCH syntax).
	Pattern string `json:"pattern,omitempty"`
	// Tag is the tag of a tag invalidation.
	Tag    string `json:"tag,omitempty"`
	UserID string `json:"user_id,omitempty"`
	TaskID string `json:"task_id,omitempty"`
	// Time is when the worker made the change; on the wire it is in
	// TimeLayout (UTC, microseconds).
	Time   time.Time `json:"time"`
	Missed bool      `json:"missed,omitempty"`
}

// TimeLayout is how an event's time is written on the wire: UTC, exactly six
// fraction digits (microseconds) and an explicit "+00:00" offset, for
// example "2024-01-15T10:30:00.123456+00:00". Every Python from 3.7 on
// parses it with datetime.fromisoformat (which before 3.11 refuses "Z" and
// more than six digits), and so does any RFC 3339 parser. Finer precision is
// truncated.
const TimeLayout = "2006-01-02T15:04:05.000000-07:00"

// MarshalJSON writes the event with its time in TimeLayout.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // no methods: no recursion
	return json.Marshal(struct {
		plain
		Time string `json:"time"`
	}{plain(e), e.Time.UTC().Format(TimeLayout)})
}

// Publisher publishes events on one channel.
type Publisher struct {
	rdb     redis.UniversalClient
	channel string
	maxKeys int
	sharded bool
}

// NewPublisher returns a publisher on channel, listing at most maxKeys keys
// (and ids) per event. On Redis Cluster it uses sharded pub/sub (SPUBLISH).
func NewPublisher(rdb redis.UniversalClient, channel string, maxKeys int) (*Publisher, error) {
	if rdb == nil {
		return nil, fmt.Errorf("events: nil Redis client")
	}
	if channel == "" {
		return nil, fmt.Errorf("events: empty channel name")
	}
	_, cluster := rdb.(*redis.ClusterClient)
	return &Publisher{rdb: rdb, channel: channel, maxKeys: maxKeys, sharded: cluster}, nil
}

// Channel returns the channel name.
func (p *Publisher) Channel() string { return p.channel }

// Publish sends e, filling Time and KeyCount and capping Keys. A nil
// Publisher publishes nothing (events disabled).
func (p *Publisher) Publish(ctx context.Context, e Event) error {
	if p == nil {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.KeyCount < len(e.Keys) {
		e.KeyCount = len(e.Keys)
	}
	if e.KeyCount < len(e.IDs) {
		e.KeyCount = len(e.IDs)
	}
	if p.maxKeys >= 0 && len(e.Keys) > p.maxKeys {
		e.Keys = e.Keys[:p.maxKeys]
	}
	if p.maxKeys >= 0 && len(e.IDs) > p.maxKeys {
		e.IDs = e.IDs[:p.maxKeys]
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if p.sharded {
		err = p.rdb.SPublish(ctx, p.channel, data).Err()
	} else {
		err = p.rdb.Publish(ctx, p.channel, data).Err()
	}
	if err != nil {
		return fmt.Errorf("publish event on %q: %w", p.channel, err)
	}
	return nil
}
