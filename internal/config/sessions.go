package config

import (
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// SessionsConfig describes the application's session layout. The defaults
// match the FastAPI guide: hash session:{token} with user_id and created_at.
type SessionsConfig struct {
	Key            string `yaml:"key"`
	Index          string `yaml:"index"`
	UserIDField    string `yaml:"user_id_field"`
	CreatedAtField string `yaml:"created_at_field"`
	LastSeenField  string `yaml:"last_seen_field"`
	// TTL is given to sessions found without one (default 24h).
	TTL time.Duration `yaml:"ttl"`
	// MaxAge deletes sessions created longer ago (0: never by age).
	MaxAge time.Duration `yaml:"max_age"`
	// IdleTimeout deletes sessions not seen for this long (0: never by idleness).
	IdleTimeout      time.Duration `yaml:"idle_timeout"`
	MaxKeysPerSecond int           `yaml:"max_keys_per_second"`
}

func (s *SessionsConfig) setDefaults() {
	s.Key = "session:{token}"
	s.Index = "user:{user_id}:sessions"
	s.UserIDField = "user_id"
	s.CreatedAtField = "created_at"
	s.LastSeenField = "last_seen"
	s.TTL = 24 * time.Hour
	s.MaxAge = 24 * time.Hour
}

func (s *SessionsConfig) validate() error {
	if _, err := keys.ParseTemplate(s.Key); err != nil {
		return fmt.Errorf("sessions.key: %v", err)
	}
	if s.Index != "" {
		if _, err := keys.ParseTemplate(s.Index); err != nil {
			return fmt.Errorf("sessions.index: %v", err)
		}
	}
	if s.UserIDField == "" || s.CreatedAtField == "" {
		return fmt.Errorf("sessions.user_id_field and sessions.created_at_field must not be empty")
	}
	if err := positive("sessions.ttl", s.TTL); err != nil {
		return err
	}
	if s.MaxAge < 0 || s.IdleTimeout < 0 {
		return fmt.Errorf("sessions.max_age and sessions.idle_timeout must not be negative")
	}
	if s.MaxKeysPerSecond < 0 {
		return fmt.Errorf("sessions.max_keys_per_second must be 0 (no cap) or positive")
	}
	return nil
}

// RateLimitsConfig describes sliding-window rate-limit sets: sorted sets
// whose scores are request times.
type RateLimitsConfig struct {
	Key string `yaml:"key"`
	// Window is the sliding window; older entries are pruned.
	Window time.Duration `yaml:"window"`
	// ScoreUnit is "s" (Unix seconds, the FastAPI guide) or "ms".
	ScoreUnit        string `yaml:"score_unit"`
	MaxKeysPerSecond int    `yaml:"max_keys_per_second"`
}

func (r *RateLimitsConfig) setDefaults() {
	r.Key = "rate_limit:{client}"
	r.Window = time.Minute
	r.ScoreUnit = "s"
}

func (r *RateLimitsConfig) validate() error {
	if _, err := keys.ParseTemplate(r.Key); err != nil {
		return fmt.Errorf("rate_limits.key: %v", err)
	}
	if err := positive("rate_limits.window", r.Window); err != nil {
		return err
	}
	if r.ScoreUnit != "s" && r.ScoreUnit != "ms" {
		return fmt.Errorf("rate_limits.score_unit %q must be s or ms", r.ScoreUnit)
	}
	if r.MaxKeysPerSecond < 0 {
		return fmt.Errorf("rate_limits.max_keys_per_second must be 0 (no cap) or positive")
	}
	return nil
}
