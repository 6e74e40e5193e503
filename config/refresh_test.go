package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
)

func TestRefreshAheadParsesAndDefaults(t *testing.T) {
	t.Parallel()
	body := "caches:\n  user:\n    key: user:{id}\n    ttl: 1h\n    by_ids: SELECT 1 WHERE id IN (?)\n" +
		"    refresh_ahead:\n      enabled: true\n      sample: 0.5\n"
	c, err := config.Load(write(t, body), nil)
	if err != nil {
		t.Fatal(err)
	}
	ra := c.Caches["user"].RefreshAhead
	if !ra.Enabled || ra.Sample != 0.5 {
		t.Fatalf("refresh_ahead = %+v", ra)
	}
	d := ra.WithDefaults(time.Hour)
	if d.BeforeExpiry != 6*time.Minute || d.Interval != time.Second || d.ReadWithin != time.Minute || d.Sample != 0.5 {
		t.Fatalf("defaults for a 1h ttl = %+v", d)
	}
	if short := (config.RefreshAhead{}).WithDefaults(4 * time.Second); short.BeforeExpiry != 2*time.Second {
		t.Fatalf("before_expiry for a 4s ttl = %s, want half the ttl", short.BeforeExpiry)
	}
}

func TestRefreshAheadValidationNamesTheField(t *testing.T) {
	t.Parallel()
	base := "caches:\n  user:\n    key: user:{id}\n    ttl: 1m\n    by_ids: SELECT 1 WHERE id IN (?)\n    refresh_ahead:\n      enabled: true\n"
	cases := map[string]string{
		"      before_expiry: 2m\n":                       "caches.user.refresh_ahead.before_expiry must be positive and shorter than caches.user.ttl",
		"      sample: 2\n":                               "caches.user.refresh_ahead.sample must be a fraction",
		"      interval: 1ms\n":                           "caches.user.refresh_ahead.interval must be between 10ms and 1h",
		"      interval: 10s\n      before_expiry: 15s\n": "at least two intervals",
		"      read_within: -1s\n":                        "caches.user.refresh_ahead.read_within",
	}
	for extra, want := range cases {
		_, err := config.Load(write(t, base+extra), nil)
		if err == nil || !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want ErrInvalid mentioning %q", extra, err, want)
		}
	}
}
