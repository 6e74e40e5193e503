package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cachekeeper/cachekeeper/cache"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// A key read steadily is rewarmed before it expires, across several TTLs,
// so its readers never miss; a key no longer read (nothing recorded within
// read_within) is left to expire.
func TestRefreshAheadKeepsReadKeysAlive(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	usersTable(t, db)
	insertUser(t, db, 1, "hot@x", "Hot")
	insertUser(t, db, 2, "cold@x", "Cold")
	const ttl = 1500 * time.Millisecond
	b := warmSetup(t, db, true, func(c *config.Config) {
		s := c.Caches["user"]
		s.TTL = ttl
		s.RefreshAhead = config.RefreshAhead{Enabled: true, Interval: 100 * time.Millisecond, BeforeExpiry: 700 * time.Millisecond, ReadWithin: 600 * time.Millisecond, Sample: 1}
		c.Caches["user"] = s
	})
	ctx := context.Background()
	// The worker loaded the read protocol's functions on start.
	if v, err := b.redis.Client.FCallRO(ctx, "ck1_version", nil).Int64Slice(); err != nil || len(v) != 2 || v[0] != 1 {
		t.Fatalf("ck1_version after the worker started: %v, %v", v, err)
	}
	reader, err := cache.New(ctx, b.cfg, cache.Options{Redis: b.redis.Client, DB: db.DB})
	if err != nil {
		t.Fatal(err)
	}
	// Key 2 is read twice (a miss, then a hit that is recorded), then never.
	for i := 0; i < 2; i++ {
		if _, err := reader.Get(ctx, "user", 2); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now().Add(3*ttl + 500*time.Millisecond)
	reads := 0
	for time.Now().Before(end) {
		v, err := reader.Get(ctx, "user", 1)
		if err != nil || v["email"] != "hot@x" {
			t.Fatalf("read %d: %v, %v", reads, v, err)
		}
		reads++
		time.Sleep(50 * time.Millisecond)
	}
	st := reader.Stats()
	refreshed := testutil.ToFloat64(b.worker.Metrics().RefreshAhead.WithLabelValues("user", "refreshed"))
	t.Logf("%d reads of the hot key over %s (ttl %s): %+v; refreshed %v", reads, 3*ttl+500*time.Millisecond, ttl, st, refreshed)
	// Two loads: the first read of each key; none at the hot key's expiries.
	if st.Loads != 2 {
		t.Fatalf("%d loads, want 2 (no miss of the hot key at its expiry)", st.Loads)
	}
	if refreshed < 3 {
		t.Fatalf("refreshed %v keys, want one per TTL at least (3)", refreshed)
	}
	if n := b.redis.Client.Exists(ctx, "user:2").Val(); n != 0 {
		t.Fatal("the key read once was refreshed instead of left to expire")
	}
}
