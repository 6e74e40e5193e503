package devmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/ratelimit"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// The demo keeps to its own keys, so that it is safe on a real Redis too.
const (
	demoSessionKey   = "demo:session:{token}"
	demoSessionIndex = "demo:user:{user_id}:sessions"
	demoRateLimitKey = "demo:rate_limit:{client}"
)

// DemoSessions shows the session and rate-limit data cachekeeper maintains:
// it creates sessions with the session package and, as applications really
// leave them, one without a TTL, one past max_age and an index with a dead
// token; it runs the rate limiter over its limit and writes a guide-style
// set whose same-second requests collapsed and which never expires; then it
// cleans everything with the code the session:cleanup, ratelimit:prune and
// session:revoke jobs run, printing each step on out. It touches only keys
// under "demo:".
func DemoSessions(ctx context.Context, rdb redis.UniversalClient, out io.Writer) error {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("server time: %w", err)
	}
	scfg := config.DefaultSessions()
	scfg.Key, scfg.Index = demoSessionKey, demoSessionIndex
	scfg.MaxAge, scfg.IdleTimeout = 24*time.Hour, 2*time.Hour
	store, err := session.New(rdb, session.Config{Key: scfg.Key, Index: scfg.Index, TTL: scfg.TTL})
	if err != nil {
		return err
	}

	// Sessions, the right way and the messy ways.
	var alice []string
	for i := 0; i < 2; i++ {
		tok, err := store.Create(ctx, "alice", map[string]string{"ip": "203.0.113.7"})
		if err != nil {
			return err
		}
		alice = append(alice, tok)
	}
	fmt.Fprintf(out, "[sessions] created 2 sessions of alice with HSET+EXPIRE in one MULTI: %s, %s (TTL 24h, indexed in %s)\n",
		store.Key(short(alice[0])), store.Key(short(alice[1])), store.IndexKey("alice"))
	noTTL, err := session.NewToken()
	if err != nil {
		return err
	}
	old, err := session.NewToken()
	if err != nil {
		return err
	}
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		// HSET whose EXPIRE never ran (the app crashed between the two calls).
		p.HSet(ctx, store.Key(noTTL), "user_id", "bob", "created_at", session.FormatTime(now.Add(-10*time.Minute)))
		// Created three days ago; its TTL was renewed by a sliding expiry.
		p.HSet(ctx, store.Key(old), "user_id", "bob", "created_at", session.FormatTime(now.Add(-72*time.Hour)),
			"last_seen", session.FormatTime(now.Add(-5*time.Minute)))
		p.Expire(ctx, store.Key(old), time.Hour)
		// Bob's index lists both, and a token whose session is long gone.
		p.SAdd(ctx, store.IndexKey("bob"), noTTL, old, "long-gone-token")
		return nil
	})
	if err != nil {
		return fmt.Errorf("write messy sessions: %w", err)
	}
	fmt.Fprintf(out, "[sessions] wrote like a real app: %s with no TTL, %s created 3 days ago, a dead token in %s\n",
		store.Key(short(noTTL)), store.Key(short(old)), store.IndexKey("bob"))

	rep, err := session.Cleanup(ctx, rdb, scfg, tasks.SessionCleanupArgs{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "[sessions] session:cleanup (max_age 24h, idle_timeout 2h): scanned %d, expired %d (by age %d, idle %d), TTL given to %d, index tokens pruned %d, unparseable %d\n",
		rep.Scanned, rep.Expired, rep.ExpiredByAge, rep.ExpiredByIdle, rep.FixedTTL, rep.IndexMembersPruned, rep.Unparseable)
	ttl, err := rdb.TTL(ctx, store.Key(noTTL)).Result()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "[sessions] the session without TTL now expires in %s (what idle_timeout leaves it)\n", ttl.Round(time.Second))

	rev, err := session.Revoke(ctx, rdb, scfg, "alice", false)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "[sessions] session:revoke alice: %d sessions deleted via the %s (the job also publishes a session.revoked event)\n", rev.Deleted, rev.Via)
	if _, err := store.Get(ctx, alice[0]); !errors.Is(err, session.ErrNotFound) {
		return fmt.Errorf("alice's session survived revocation: %v", err)
	}

	// Rate limits.
	rcfg := config.DefaultRateLimits()
	rcfg.Key, rcfg.Window = demoRateLimitKey, 10*time.Second
	rcfg.MemorySample = 1 // a handful of keys: measure every one
	lim, err := ratelimit.New(rdb, ratelimit.Config{Key: rcfg.Key, Limit: 3, Window: rcfg.Window})
	if err != nil {
		return err
	}
	if err := lim.Reset(ctx, "203.0.113.7"); err != nil { // each round tells the same story
		return err
	}
	for i := 1; i <= 5; i++ {
		res, err := lim.Allow(ctx, "203.0.113.7")
		if err != nil {
			return err
		}
		if res.Allowed {
			fmt.Fprintf(out, "[ratelimit] request %d of 203.0.113.7: allowed, %d left in 10s\n", i, res.Remaining)
		} else {
			fmt.Fprintf(out, "[ratelimit] request %d of 203.0.113.7: refused (3 per 10s), retry in %s\n", i, res.RetryAfter.Round(time.Millisecond))
		}
	}
	legacy := lim.Key("legacy-client")
	sec := now.Unix()
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, legacy)
		// The FastAPI guide's members: str(current_second). Three requests
		// in one second collapse into one member; old ones are never trimmed
		// because the key never expires.
		for i := 0; i < 3; i++ {
			p.ZAdd(ctx, legacy, redis.Z{Score: float64(sec), Member: fmt.Sprint(sec)})
		}
		for _, age := range []int64{3600, 600, 60} {
			p.ZAdd(ctx, legacy, redis.Z{Score: float64(sec - age), Member: fmt.Sprint(sec - age)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write legacy rate-limit set: %w", err)
	}
	n, err := rdb.ZCard(ctx, legacy).Result()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "[ratelimit] %s written the guide's way: 3 requests in one second became 1 member; %d members, 3 of them older than the window, no TTL\n", legacy, n)

	prune, err := ratelimit.Prune(ctx, rdb, rcfg, tasks.RateLimitPruneArgs{})
	if err != nil {
		return err
	}
	bytes := "n/a (no MEMORY USAGE)"
	if prune.BytesReclaimed != nil {
		bytes = fmt.Sprintf("%d", *prune.BytesReclaimed)
	}
	fmt.Fprintf(out, "[ratelimit] ratelimit:prune (window 10s, server clock): scanned %d sets, removed %d entries, deleted %d sets, TTL restored on %d, bytes reclaimed %s\n",
		prune.Scanned, prune.EntriesRemoved, prune.KeysDeleted, prune.TTLFixed, bytes)
	return nil
}

// short abbreviates a token for printing.
func short(token string) string {
	if len(token) <= 8 {
		return token
	}
	return token[:8] + "…"
}
