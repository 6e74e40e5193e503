package config

import (
	"fmt"
	"time"
)

// RefreshAhead rewarms the keys of a cache that are being read before they
// expire (caches.<name>.refresh_ahead). Readers of the read path (package
// cache, and clients of the read protocol in other languages) record hits of
// keys close to expiry (within twice BeforeExpiry) in the cache's hot set,
// at most once per key per second per process; every Interval one worker of
// the fleet takes the ids read within ReadWithin whose keys expire within
// BeforeExpiry and rewarms them with fenced writes, in chunks of
// warm.chunk_size. A key nobody reads is left to expire.
type RefreshAhead struct {
	// Enabled turns refresh-ahead on for the cache.
	Enabled bool `yaml:"enabled"`
	// BeforeExpiry: a read key whose TTL left is below this is rewarmed.
	// Default: a tenth of the cache's ttl, at least 3 intervals, at most half
	// the ttl.
	BeforeExpiry time.Duration `yaml:"before_expiry,omitempty"`
	// ReadWithin: a key counts as being read when a sampled read of it was
	// recorded this recently (default 1m).
	ReadWithin time.Duration `yaml:"read_within,omitempty"`
	// Sample is the fraction of hits close to expiry a reader records
	// (default 1: every one, within the limit of one per key per second per
	// process; lower it for keys read by very many processes).
	Sample float64 `yaml:"sample,omitempty"`
	// Interval is how often the worker looks for keys to rewarm (default 1s).
	Interval time.Duration `yaml:"interval,omitempty"`
}

// Refresh-ahead defaults.
const (
	DefaultRefreshInterval   = time.Second
	DefaultRefreshReadWithin = time.Minute
	DefaultRefreshSample     = 1.0
)

// WithDefaults returns r with its unset fields filled for a cache whose keys
// live ttl.
func (r RefreshAhead) WithDefaults(ttl time.Duration) RefreshAhead {
	if r.Interval == 0 {
		r.Interval = DefaultRefreshInterval
	}
	if r.ReadWithin == 0 {
		r.ReadWithin = DefaultRefreshReadWithin
	}
	if r.Sample == 0 {
		r.Sample = DefaultRefreshSample
	}
	if r.BeforeExpiry == 0 {
		r.BeforeExpiry = max(ttl/10, 3*r.Interval)
		r.BeforeExpiry = min(r.BeforeExpiry, ttl/2)
	}
	return r
}

func (r RefreshAhead) validate(name string, ttl time.Duration) error {
	p := "caches." + name + ".refresh_ahead."
	if r.Interval < 0 || (r.Interval != 0 && (r.Interval < 10*time.Millisecond || r.Interval > time.Hour)) {
		return fmt.Errorf("%sinterval must be between 10ms and 1h, got %s", p, r.Interval)
	}
	if r.ReadWithin < 0 {
		return fmt.Errorf("%sread_within must be a positive duration such as 1m, got %s", p, r.ReadWithin)
	}
	if r.Sample < 0 || r.Sample > 1 {
		return fmt.Errorf("%ssample must be a fraction between 0 and 1 (0.5 records one hit in two), got %v", p, r.Sample)
	}
	if r.BeforeExpiry < 0 || r.BeforeExpiry >= ttl {
		return fmt.Errorf("%sbefore_expiry must be positive and shorter than caches.%s.ttl (%s), got %s", p, name, ttl, r.BeforeExpiry)
	}
	d := r.WithDefaults(ttl)
	if r.Enabled && d.BeforeExpiry < 2*d.Interval {
		return fmt.Errorf("%sbefore_expiry (%s) must be at least two intervals (%s): a key must be seen near expiry before it expires; lower interval or raise before_expiry", p, d.BeforeExpiry, d.Interval)
	}
	return nil
}
