package config

import (
	"strings"
	"testing"
	"time"
)

func TestSessionsAndRateLimitsValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultSessions().Validate(); err != nil {
		t.Fatalf("default sessions: %v", err)
	}
	if err := DefaultRateLimits().Validate(); err != nil {
		t.Fatalf("default rate limits: %v", err)
	}
	noIndex := DefaultSessions()
	noIndex.Index = ""
	if err := noIndex.Validate(); err != nil {
		t.Fatalf("sessions without index: %v", err)
	}
	for name, c := range map[string]struct {
		mutate func(*SessionsConfig)
		want   string
	}{
		"two placeholders": {func(s *SessionsConfig) { s.Key = "s:{a}:{b}" }, "sessions.key"},
		"index glob":       {func(s *SessionsConfig) { s.Index = "u:*:{id}" }, "sessions.index"},
		"same fields":      {func(s *SessionsConfig) { s.LastSeenField = s.CreatedAtField }, "distinct"},
		"short ttl":        {func(s *SessionsConfig) { s.TTL = time.Millisecond }, "sessions.ttl"},
		"negative age":     {func(s *SessionsConfig) { s.MaxAge = -time.Second }, "sessions.max_age"},
		"negative batch":   {func(s *SessionsConfig) { s.BatchSize = -1 }, "sessions.batch_size"},
	} {
		s := DefaultSessions()
		c.mutate(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one naming %s", name, err, c.want)
		}
	}
	for name, c := range map[string]struct {
		mutate func(*RateLimitsConfig)
		want   string
	}{
		"two placeholders": {func(r *RateLimitsConfig) { r.Key = "rl:{a}:{b}" }, "rate_limits.key"},
		"unit":             {func(r *RateLimitsConfig) { r.ScoreUnit = "us" }, "rate_limits.score_unit"},
		"window":           {func(r *RateLimitsConfig) { r.Window = 0 }, "rate_limits.window"},
		"memory sample":    {func(r *RateLimitsConfig) { r.MemorySample = -1 }, "rate_limits.memory_sample"},
	} {
		r := DefaultRateLimits()
		c.mutate(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one naming %s", name, err, c.want)
		}
	}
}
