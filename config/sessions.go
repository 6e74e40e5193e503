package config

import (
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// DefaultScanBatch is how many keys the session and rate-limit jobs handle
// per pipeline when batch_size is not set.
const DefaultScanBatch = 1000

// SessionsConfig describes the application's session layout. The defaults
// match the FastAPI guide: hash session:{token} with user_id and created_at,
// index set user:{user_id}:sessions.
type SessionsConfig struct {
	// Key is the session hash template; its one placeholder is the token.
	Key string `yaml:"key"`
	// Index is the per-user token set template; "" when the application
	// keeps no index (revocation then scans every session).
	Index          string `yaml:"index"`
	UserIDField    string `yaml:"user_id_field"`
	CreatedAtField string `yaml:"created_at_field"`
	LastSeenField  string `yaml:"last_seen_field"`
	// TTL is given to sessions found without one (default 24h), shortened
	// to what is left of max_age or idle_timeout when that is sooner.
	TTL time.Duration `yaml:"ttl"`
	// MaxAge deletes sessions created longer ago (0: never by age).
	MaxAge time.Duration `yaml:"max_age"`
	// IdleTimeout deletes sessions not seen for this long (0: never by idleness).
	IdleTimeout      time.Duration `yaml:"idle_timeout"`
	MaxKeysPerSecond int           `yaml:"max_keys_per_second"`
	// BatchSize is how many keys go in one pipeline (default DefaultScanBatch).
	BatchSize int `yaml:"batch_size"`
}

// DefaultSessions returns the sessions section's defaults.
func DefaultSessions() SessionsConfig {
	var s SessionsConfig
	s.setDefaults()
	return s
}

func (s *SessionsConfig) setDefaults() {
	s.Key = "session:{token}"
	s.Index = "user:{user_id}:sessions"
	s.UserIDField = "user_id"
	s.CreatedAtField = "created_at"
	s.LastSeenField = "last_seen"
	s.TTL = 24 * time.Hour
	s.MaxAge = 24 * time.Hour
	s.BatchSize = DefaultScanBatch
}

// Validate checks the section alone (Config.Validate checks every section).
func (s SessionsConfig) Validate() error { return s.validate() }

func (s *SessionsConfig) validate() error {
	if _, err := keys.NewSessionLayout(s.Key, s.Index); err != nil {
		return err
	}
	if s.UserIDField == "" || s.CreatedAtField == "" {
		return fmt.Errorf("sessions.user_id_field and sessions.created_at_field must not be empty")
	}
	if s.UserIDField == s.CreatedAtField || s.UserIDField == s.LastSeenField || s.CreatedAtField == s.LastSeenField {
		return fmt.Errorf("sessions.user_id_field, created_at_field and last_seen_field must be distinct")
	}
	if err := positive("sessions.ttl", s.TTL); err != nil {
		return err
	}
	if s.TTL < time.Second {
		return fmt.Errorf("sessions.ttl must be at least 1s, got %s", s.TTL)
	}
	if s.MaxAge < 0 || s.IdleTimeout < 0 {
		return fmt.Errorf("sessions.max_age and sessions.idle_timeout must not be negative")
	}
	if s.MaxKeysPerSecond < 0 {
		return fmt.Errorf("sessions.max_keys_per_second must be 0 (no cap) or positive")
	}
	if s.BatchSize < 0 {
		return fmt.Errorf("sessions.batch_size must be 0 (default %d) or positive", DefaultScanBatch)
	}
	return nil
}
