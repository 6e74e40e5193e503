package ratelimit_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/ratelimit"
)

// The FastAPI guide's limiter, split at the point where another request can
// run in between: check trims and counts, add records the request.
type naive struct {
	rdb    *redis.Client
	window int64 // seconds
	// member names the entry; the guide uses str(current_time).
	member func(now int64) string
}

func (n naive) check(ctx context.Context, key string, limit int64) (now int64, ok bool) {
	t := n.rdb.Time(ctx).Val()
	now = t.Unix()
	n.rdb.ZRemRangeByScore(ctx, key, "0", strconv.FormatInt(now-n.window, 10))
	return now, n.rdb.ZCard(ctx, key).Val() < limit
}

func (n naive) add(ctx context.Context, key string, now int64) {
	n.rdb.ZAdd(ctx, key, redis.Z{Score: float64(now), Member: n.member(now)})
	n.rdb.Expire(ctx, key, time.Duration(n.window)*time.Second)
}

func (n naive) allow(ctx context.Context, key string, limit int64) bool {
	now, ok := n.check(ctx, key, limit)
	if ok {
		n.add(ctx, key, now)
	}
	return ok
}

// Bug 1 of the guide's version: requests in the same second share the
// member str(now), so they collapse into one entry and are under-counted.
func TestNaiveSameSecondMembersUnderCount(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	guide := naive{rdb: r.Client, window: 60, member: func(now int64) string { return strconv.FormatInt(now, 10) }}
	allowed := 0
	for i := 0; i < 10; i++ {
		if guide.allow(ctx, "rate_limit:naive", 5) {
			allowed++
		}
	}
	// Ten requests, limit five: all ten pass because the set holds one
	// member per second (two if the loop crossed a second boundary).
	if allowed != 10 {
		t.Fatalf("naive version allowed %d of 10 with limit 5; the same-second bug should let all 10 through", allowed)
	}
	if n := r.Client.ZCard(ctx, "rate_limit:naive").Val(); n > 2 {
		t.Fatalf("naive set holds %d members, want at most 2 (collapsed)", n)
	}

	l, _ := ratelimit.New(r.Client, ratelimit.Config{Limit: 5, Window: time.Minute})
	allowed = 0
	for i := 0; i < 10; i++ {
		res, err := l.Allow(ctx, "fixed")
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("Allow let %d of 10 through with limit 5", allowed)
	}
	if n := r.Client.ZCard(ctx, "rate_limit:fixed").Val(); n != 5 {
		t.Fatalf("set holds %d members, want 5 (one per accepted request)", n)
	}
}

// Bug 2 of the guide's version: check-then-add. Even with unique members,
// concurrent requests all read a count under the limit before any adds.
func TestNaiveCheckThenAddRaceVersusAtomicUnderConcurrency(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	const limit, requests = 10, 40
	var seq atomic.Int64
	unique := naive{rdb: r.Client, window: 60, member: func(int64) string { return strconv.FormatInt(seq.Add(1), 10) }}

	// Every request checks before any adds: the interleaving a busy server
	// produces. A barrier makes it happen every time.
	var checked, done sync.WaitGroup
	checked.Add(requests)
	var allowed atomic.Int64
	for i := 0; i < requests; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			now, ok := unique.check(ctx, "rate_limit:race", limit)
			checked.Done()
			checked.Wait()
			if ok {
				unique.add(ctx, "rate_limit:race", now)
				allowed.Add(1)
			}
		}()
	}
	done.Wait()
	if allowed.Load() <= limit {
		t.Fatalf("naive check-then-add allowed %d with limit %d; the race should let more through", allowed.Load(), limit)
	}

	// Ours: the same burst, truly concurrent, several rounds.
	l, err := ratelimit.New(r.Client, ratelimit.Config{Limit: limit, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		client := fmt.Sprintf("burst%d", round)
		var ok atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < requests; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := l.Allow(ctx, client)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					ok.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok.Load() != limit {
			t.Fatalf("round %d: Allow let %d of %d concurrent requests through, want exactly %d", round, ok.Load(), requests, limit)
		}
		if n := r.Client.ZCard(ctx, l.Key(client)).Val(); n != limit {
			t.Fatalf("round %d: set holds %d members, want %d", round, n, limit)
		}
	}
}

func TestAllowRemainingRetryAfterAndExpiry(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	l, err := ratelimit.New(r.Client, ratelimit.Config{Limit: 3, Window: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for want := 2; want >= 0; want-- {
		res, err := l.Allow(ctx, "1.2.3.4")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Remaining != want || res.RetryAfter != 0 || res.Limit != 3 {
			t.Fatalf("Allow = %+v, want allowed with %d remaining", res, want)
		}
	}
	res, _ := l.Allow(ctx, "1.2.3.4")
	if res.Allowed || res.Remaining != 0 || res.RetryAfter <= 29*time.Second || res.RetryAfter > 30*time.Second {
		t.Fatalf("4th Allow = %+v, want refused with retry-after about 30s", res)
	}
	if ttl := r.Client.PTTL(ctx, "rate_limit:1.2.3.4").Val(); ttl <= 29*time.Second || ttl > 30*time.Second {
		t.Fatalf("PTTL = %s, want about the window", ttl)
	}
	// Scores are Unix seconds of the server clock, as the prune job expects.
	now := r.Client.Time(ctx).Val()
	for _, z := range r.Client.ZRangeWithScores(ctx, "rate_limit:1.2.3.4", 0, -1).Val() {
		if d := now.Sub(time.UnixMicro(int64(z.Score * 1e6))); d < 0 || d > 5*time.Second {
			t.Fatalf("score %f is %s from server time %s", z.Score, d, now)
		}
	}
}

func TestAllowTrimsOldEntriesAndRepairsMissingTTL(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	l, _ := ratelimit.New(r.Client, ratelimit.Config{Limit: 2, Window: 10 * time.Second, ScoreUnit: "ms"})
	key := l.Key("c")
	nowMS := float64(r.Client.Time(ctx).Val().UnixMilli())
	// Messy data: two entries older than the window, two inside it, no TTL.
	r.Client.ZAdd(ctx, key, redis.Z{Score: nowMS - 60000, Member: "old1"}, redis.Z{Score: nowMS - 11000, Member: "old2"},
		redis.Z{Score: nowMS - 1000, Member: "new1"}, redis.Z{Score: nowMS - 500, Member: "new2"})
	res, err := l.Allow(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if res.Allowed {
		t.Fatalf("Allow = %+v, want refused: two entries are inside the window", res)
	}
	if res.RetryAfter <= 8*time.Second || res.RetryAfter > 9*time.Second {
		t.Fatalf("RetryAfter = %s, want about 9s (new1 leaves the window)", res.RetryAfter)
	}
	if n := r.Client.ZCard(ctx, key).Val(); n != 2 {
		t.Fatalf("ZCARD = %d, want 2 (old entries trimmed)", n)
	}
	if ttl := r.Client.PTTL(ctx, key).Val(); ttl <= 0 {
		t.Fatalf("PTTL = %s, want the missing TTL restored", ttl)
	}
	if err := l.Reset(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if res, _ := l.Allow(ctx, "c"); !res.Allowed || res.Remaining != 1 {
		t.Fatalf("after Reset: %+v, want allowed with 1 remaining", res)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, c := range []ratelimit.Config{
		{Limit: 0, Window: time.Second},
		{Limit: 1, Window: 0},
		{Limit: 1, Window: time.Second, ScoreUnit: "us"},
		{Limit: 1, Window: time.Second, Key: "rl:{a}:{b}"},
	} {
		if _, err := ratelimit.New(r.Client, c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
