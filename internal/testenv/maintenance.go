package testenv

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fixtures of session and rate-limit data the way applications really leave
// it, shared by the session, ratelimit and worker tests.

// MessySessions writes sessions the way applications really leave them and
// returns the server's time. Index user:alice:sessions lists a live
// session, an expired one and two dead tokens; user:ghost:sessions only dead
// tokens.
func MessySessions(t *testing.T, rdb redis.UniversalClient) time.Time {
	t.Helper()
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	iso := func(d time.Duration) string { return now.Add(-d).UTC().Format("2006-01-02T15:04:05.000000") }
	write := func(key string, ttl time.Duration, fields ...string) {
		if err := rdb.HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			rdb.Expire(ctx, key, ttl)
		}
	}
	write("session:fresh", 23*time.Hour, "user_id", "alice", "created_at", iso(30*time.Minute))
	write("session:old", time.Hour, "user_id", "alice", "created_at", iso(48*time.Hour)) // past max_age
	write("session:nottl", 0, "user_id", "bob", "created_at", iso(20*time.Minute))       // HSET without EXPIRE
	write("session:idle", 20*time.Hour, "user_id", "bob", "created_at", iso(3*time.Hour), "last_seen", iso(2*time.Hour))
	write("session:zoned", 0, "user_id", "carol", "created_at", now.Add(-30*time.Hour).In(time.FixedZone("", 2*3600)).Format(time.RFC3339))
	write("session:unix", 0, "user_id", "carol", "created_at", fmt.Sprint(now.Add(-10*time.Minute).Unix()))
	write("session:pythonnomicro", 0, "user_id", "dave", "created_at", now.Add(-15*time.Minute).UTC().Format("2006-01-02T15:04:05"))
	write("session:garbled", 0, "user_id", "eve", "created_at", "last tuesday") // unparseable: left alone
	write("session:nouser", 0, "created_at", iso(72*time.Hour))                 // unparseable: left alone
	write("session:config", 0, "theme", "dark")                                 // not a session at all
	rdb.Set(ctx, "session:legacy", "pickled", 0)                                // a string: not a hash
	rdb.SAdd(ctx, "user:alice:sessions", "fresh", "old", "dead1", "dead2")      // dead tokens
	rdb.SAdd(ctx, "user:ghost:sessions", "gone1", "gone2")                      // only dead tokens
	rdb.SAdd(ctx, "user:bob:sessions", "nottl", "idle")                         // idle will go
	return now
}

// MessyRateLimits writes sliding-window sets as applications leave them, with
// scores in Unix seconds relative to now (the server's clock):
//   - rate_limit:mixed: two old entries, two recent, a TTL;
//   - rate_limit:dead: only old entries and no TTL (never allowed to expire);
//   - rate_limit:nottl: only recent entries, no TTL;
//   - rate_limit:guide: the FastAPI guide's members named after the second,
//     so requests of one second collapsed into one member;
//   - rate_limit:hash (a hash) and other:old (outside the pattern), untouched.
func MessyRateLimits(t *testing.T, rdb redis.UniversalClient, now float64) {
	t.Helper()
	ctx := context.Background()
	z := func(key string, ttl time.Duration, ages ...float64) {
		for i, age := range ages {
			if err := rdb.ZAdd(ctx, key, redis.Z{Score: now - age, Member: "m" + strconv.Itoa(i)}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if ttl > 0 {
			rdb.Expire(ctx, key, ttl)
		}
	}
	z("rate_limit:mixed", time.Minute, 300, 61, 10, 1)
	z("rate_limit:dead", 0, 3600, 600, 90)
	z("rate_limit:nottl", 0, 30, 20, 5)
	sec := strconv.FormatFloat(now, 'f', 0, 64)
	old := strconv.FormatFloat(now-100, 'f', 0, 64)
	rdb.ZAdd(ctx, "rate_limit:guide", redis.Z{Score: now - 100, Member: old}, redis.Z{Score: now, Member: sec})
	rdb.Expire(ctx, "rate_limit:guide", time.Minute)
	rdb.HSet(ctx, "rate_limit:hash", "count", 3)
	z("other:old", 0, 3600)
}

// ServerNow returns the server's clock in Unix seconds.
func ServerNow(t *testing.T, rdb redis.UniversalClient) float64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return float64(now.Unix())
}
