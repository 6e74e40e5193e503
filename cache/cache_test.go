package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/cache"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// userSpec is the demo cache over the users table of usersTable.
func userSpec() config.CacheSpec {
	return config.CacheSpec{
		Key:   "user:{id}",
		TTL:   time.Hour,
		ByIDs: "SELECT id, email, full_name AS name, active, created_at FROM users WHERE id IN (?)",
	}
}

// usersTable creates the users table with one row, id 1.
func usersTable(t *testing.T, db *testenv.DB) {
	t.Helper()
	_, err := db.Exec(`CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, full_name text,
		active boolean NOT NULL DEFAULT true, created_at timestamptz NOT NULL DEFAULT '2026-01-02 03:04:05.25+00')`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users (id, email, full_name) VALUES (1, 'ada@x', 'Ada')`); err != nil {
		t.Fatal(err)
	}
}

type bundle struct {
	rdb    redis.UniversalClient
	db     *testenv.DB
	reader *cache.Reader
	cfg    config.Config
}

func setup(t *testing.T, rdb redis.UniversalClient, mutate func(*config.Config, *cache.Options)) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	usersTable(t, db)
	cfg := config.Default()
	cfg.Caches = map[string]config.CacheSpec{"user": userSpec()}
	opts := cache.Options{Redis: rdb, DB: db.DB}
	if mutate != nil {
		mutate(&cfg, &opts)
	}
	r, err := cache.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{rdb: rdb, db: db, reader: r, cfg: cfg}
}

// slowLoader counts its calls and takes d per call.
func slowLoader(calls *atomic.Int64, d time.Duration) cache.Loader {
	return func(ctx context.Context, id string) (map[string]string, error) {
		calls.Add(1)
		time.Sleep(d)
		return map[string]string{"id": id, "name": "Ada"}, nil
	}
}

// A burst of readers of a missing key loads it once, whether they share a
// process (single flight) or act as separate processes (leases alone).
func TestBurstLoadsOnce(t *testing.T) {
	t.Parallel()
	for _, separate := range []bool{false, true} {
		t.Run(fmt.Sprintf("separate_processes=%v", separate), func(t *testing.T) {
			t.Parallel()
			r := testenv.NewRedis(t)
			rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: r.Client.Options().Addr, PoolSize: 250})
			t.Cleanup(func() { _ = rdb.Close() })
			b := setup(t, rdb, func(_ *config.Config, o *cache.Options) { o.NoSingleFlight = separate })
			var calls atomic.Int64
			load := slowLoader(&calls, 50*time.Millisecond)
			const readers = 200
			var wg sync.WaitGroup
			errs := make(chan error, readers)
			start := time.Now()
			for i := 0; i < readers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					v, err := b.reader.GetWith(ctx, "user", 1, load)
					if err == nil && v["name"] != "Ada" {
						err = fmt.Errorf("got %v", v)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d readers, %d loads, %s", readers, calls.Load(), time.Since(start))
			if calls.Load() != 1 {
				t.Fatalf("%d loads for a burst of %d readers, want 1", calls.Load(), readers)
			}
			if got := rdb.HGet(context.Background(), "user:1", "name").Val(); got != "Ada" {
				t.Fatalf("cached name = %q", got)
			}
		})
	}
}

// The fill writes the hash the worker writes (the spec's query, the
// worker's rendering), with the cache's TTL, and a miss of a missing row is
// ErrNotFound.
func TestGetLoadsBySpec(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, nil)
	ctx := context.Background()
	v, err := b.reader.Get(ctx, "user", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "1", "email": "ada@x", "name": "Ada", "active": "true", "created_at": "2026-01-02T03:04:05.25Z"}
	if fmt.Sprint(v) != fmt.Sprint(want) {
		t.Fatalf("Get = %v, want %v", v, want)
	}
	cached := r.Client.HGetAll(ctx, "user:1").Val()
	if fmt.Sprint(cached) != fmt.Sprint(want) {
		t.Fatalf("cached %v, want %v", cached, want)
	}
	if ttl := r.Client.PTTL(ctx, "user:1").Val(); ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("ttl %s, want the cache's 1h", ttl)
	}
	// Same bytes as the worker's warm: the fenced write of the spec's batch.
	r.Client.Del(ctx, "user:1")
	if _, err := b.db.Exec(`UPDATE users SET full_name = NULL WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	v, err = b.reader.Get(ctx, "user", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v["name"]; ok || len(r.Client.HGetAll(ctx, "user:1").Val()) != 4 {
		t.Fatalf("a NULL column must be left out: got %v, cached %v", v, r.Client.HGetAll(ctx, "user:1").Val())
	}
	if _, err := b.reader.Get(ctx, "user", 404); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get of a missing row: %v, want ErrNotFound", err)
	}
	if r.Client.Exists(ctx, "user:404", keys.Default().Lease("user:404")).Val() != 0 {
		t.Fatal("a missing row left a key or a lease behind")
	}
	if _, err := b.reader.Get(ctx, "nope", 1); !errors.Is(err, cache.ErrUnknownCache) {
		t.Fatalf("unknown cache: %v", err)
	}
}

// An invalidation after the lease was granted refuses the fill, for the
// key's fence and the cache's (pattern invalidation): the reader still gets
// the row it read, and the next reader loads the new one.
func TestFillAfterInvalidationIsRefused(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"key", "cache"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			r := testenv.NewRedis(t)
			b := setup(t, r.Client, nil)
			ctx := context.Background()
			f, err := fence.New(r.Client, keys.Default(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			version := "old"
			load := func(ctx context.Context, id string) (map[string]string, error) {
				v := map[string]string{"id": id, "v": version}
				// The row changes and is invalidated while the fill is on its way.
				version = "new"
				if how == "key" {
					_, err = f.Invalidate(ctx, []string{"user:1"})
				} else {
					err = redisx.FenceCacheAdvance.Run(ctx, r.Client, []string{keys.Default().CacheFence("user", "")}, 60000).Err()
				}
				return v, err
			}
			v, err := b.reader.GetWith(ctx, "user", 1, load)
			if err != nil || v["v"] != "old" {
				t.Fatalf("Get = %v, %v; want the row read (old)", v, err)
			}
			if n := r.Client.Exists(ctx, "user:1").Val(); n != 0 {
				t.Fatalf("the refused fill cached the old row: %v", r.Client.HGetAll(ctx, "user:1").Val())
			}
			if r.Client.Exists(ctx, keys.Default().Lease("user:1")).Val() != 0 {
				t.Fatal("a refused fill must release its lease")
			}
			v, err = b.reader.GetWith(ctx, "user", 1, func(ctx context.Context, id string) (map[string]string, error) {
				return map[string]string{"id": id, "v": version}, nil
			})
			if err != nil || v["v"] != "new" || r.Client.HGet(ctx, "user:1", "v").Val() != "new" {
				t.Fatalf("next Get = %v, %v; cached %v", v, err, r.Client.HGetAll(ctx, "user:1").Val())
			}
		})
	}
}

// A waiter is woken by the fill (not by its poll interval), and a lease whose
// holder died delays readers by at most the lease TTL.
func TestWaitersAndDeadHolders(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, func(_ *config.Config, o *cache.Options) {
		o.NoSingleFlight = true
		o.LeaseTTL = 400 * time.Millisecond
		o.MaxWait = 3 * time.Second
	})
	ctx := context.Background()
	var calls atomic.Int64
	holderIn := make(chan struct{})
	go func() {
		_, _ = b.reader.GetWith(ctx, "user", 1, func(ctx context.Context, id string) (map[string]string, error) {
			close(holderIn)
			time.Sleep(150 * time.Millisecond)
			calls.Add(1)
			return map[string]string{"id": id}, nil
		})
	}()
	<-holderIn
	start := time.Now()
	if _, err := b.reader.GetWith(ctx, "user", 1, slowLoader(&calls, 0)); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	t.Logf("waiter woke %s after the holder began its 150ms load", waited)
	if calls.Load() != 1 || waited > 140*time.Millisecond+300*time.Millisecond {
		t.Fatalf("waiter: %d loads, waited %s; want 1 load and a wake-up right after the fill", calls.Load(), waited)
	}

	// A holder that never fills: its lease expires and the next reader loads.
	k := keys.Default()
	caller := redisx.NewCaller(r.Client)
	if err := caller.Call(ctx, redisx.FuncGet, []string{"user:2", k.Lease("user:2"), k.LeaseWake("user:2")}, "dead", 400).Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := b.reader.GetWith(ctx, "user", 2, slowLoader(&calls, 0)); err != nil {
		t.Fatal(err)
	}
	waited = time.Since(start)
	t.Logf("reader behind a dead holder waited %s (lease TTL 400ms)", waited)
	if waited < 300*time.Millisecond || waited > 1500*time.Millisecond || r.Client.Exists(ctx, "user:2").Val() != 1 {
		t.Fatalf("behind a dead holder: waited %s, cached %d", waited, r.Client.Exists(ctx, "user:2").Val())
	}
}

// A reader that waited MaxWait reads the row itself and does not cache it.
func TestMaxWaitReadsWithoutFilling(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, func(_ *config.Config, o *cache.Options) {
		o.NoSingleFlight = true
		o.MaxWait = 100 * time.Millisecond
	})
	ctx := context.Background()
	k := keys.Default()
	if err := redisx.NewCaller(r.Client).Call(ctx, redisx.FuncGet, []string{"user:1", k.Lease("user:1"), k.LeaseWake("user:1")}, "slow", 5000).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, err := b.reader.Get(ctx, "user", 1)
	if err != nil || v["email"] != "ada@x" {
		t.Fatalf("Get = %v, %v", v, err)
	}
	t.Logf("gave up waiting after %s", time.Since(start))
	if time.Since(start) > time.Second || r.Client.Exists(ctx, "user:1").Val() != 0 {
		t.Fatal("a reader without the lease must not fill, and must stop waiting at MaxWait")
	}
}

// Hits of a refresh_ahead cache are recorded in its hot set once the key is
// close to expiry (within twice before_expiry), at most once per second.
func TestHitSampling(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, func(c *config.Config, o *cache.Options) {
		s := c.Caches["user"]
		s.RefreshAhead = config.RefreshAhead{Enabled: true} // before_expiry 6m of the 1h ttl
		c.Caches["user"] = s
	})
	ctx := context.Background()
	hot := keys.Default().Hot("user")
	for i := 0; i < 3; i++ {
		if _, err := b.reader.Get(ctx, "user", 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Client.ZCard(ctx, hot).Val(); n != 0 {
		t.Fatalf("hits of a key an hour from expiry were recorded: %d", n)
	}
	r.Client.PExpire(ctx, "user:1", 10*time.Minute)
	for i := 0; i < 3; i++ {
		if _, err := b.reader.Get(ctx, "user", 1); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Client.ZRangeWithScores(ctx, hot, 0, -1).Val()
	if len(got) != 1 || got[0].Member != "1" || b.reader.Stats().Touches != 1 {
		t.Fatalf("hot set %v, touches %d; want id 1 recorded once (at most one per id per second)", got, b.reader.Stats().Touches)
	}
	now := testenv.ServerNow(t, r.Client) * 1000
	if d := now - got[0].Score; d < -2000 || d > 5000 {
		t.Fatalf("hot score %v, server now %v ms", got[0].Score, now)
	}
}

// Early refresh (XFetch) asks the worker for a rewarm of a hit whose key is
// about to expire, once, with a task id that coalesces the fleet's asks;
// a key far from expiry is left alone.
func TestEarlyRefreshEnqueuesOneRewarm(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	tc := tasks.NewClientFromRedis(r.Client)
	b := setup(t, r.Client, func(_ *config.Config, o *cache.Options) {
		o.Tasks = tc
		o.EarlyRefresh = cache.EarlyRefresh{Beta: 1, Delta: time.Second}
	})
	ctx := context.Background()
	if _, err := b.reader.Get(ctx, "user", 1); err != nil { // fills with a 1h TTL
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := b.reader.Get(ctx, "user", 1); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	if q, err := insp.GetQueueInfo("default"); err == nil && q.Size > 0 {
		t.Fatalf("a key an hour from expiry was refreshed early: %d jobs", q.Size)
	}
	r.Client.PExpire(ctx, "user:1", 50*time.Millisecond) // about to expire
	for i := 0; i < 20; i++ {
		if _, err := b.reader.Get(ctx, "user", 1); err != nil {
			t.Fatal(err)
		}
	}
	info, err := insp.GetTaskInfo("default", "cachekeeper-refresh:user:1")
	if err != nil {
		t.Fatalf("no rewarm asked for a key 50ms from expiry: %v", err)
	}
	t.Logf("rewarm job %s: %s %s", info.ID, info.Type, info.Payload)
	if info.Type != tasks.KindWarm {
		t.Fatalf("job kind %s, want %s", info.Type, tasks.KindWarm)
	}
	q, _ := insp.GetQueueInfo("default")
	if q.Size != 1 {
		t.Fatalf("%d jobs, want exactly one rewarm", q.Size)
	}
}

// A fill of a cache with tags adds the key to its tag sets first, as the
// worker's warm does, so a tag invalidation finds it.
func TestFillJoinsTagSets(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	b := setup(t, r.Client, func(c *config.Config, _ *cache.Options) {
		s := c.Caches["user"]
		s.Tags = []string{"active:{active}"}
		c.Caches["user"] = s
	})
	ctx := context.Background()
	if _, err := b.reader.Get(ctx, "user", 1); err != nil {
		t.Fatal(err)
	}
	tagSet := keys.Default().Tag("active:true")
	if !r.Client.SIsMember(ctx, tagSet, "user:1").Val() || r.Client.Exists(ctx, "user:1").Val() != 1 {
		t.Fatalf("tag set %s = %v, key cached %d", tagSet, r.Client.SMembers(ctx, tagSet).Val(), r.Client.Exists(ctx, "user:1").Val())
	}
	if ttl := r.Client.PTTL(ctx, tagSet).Val(); ttl <= time.Hour {
		t.Fatalf("tag set ttl %s, want longer than the keys' 1h", ttl)
	}
}
