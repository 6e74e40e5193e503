package scan_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/pace"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/internal/scan/scantest"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// seed writes n sorted sets "rl:{i}", n hashes "rl:h{i}" (same prefix, other
// type) and n strings "other:{i}".
func seed(t *testing.T, rdb redis.UniversalClient, n int) {
	t.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := 0; i < n; i++ {
		pipe.ZAdd(ctx, fmt.Sprintf("rl:%d", i), redis.Z{Score: 1, Member: "a"})
		pipe.HSet(ctx, fmt.Sprintf("rl:h%d", i), "f", "v")
		pipe.Set(ctx, fmt.Sprintf("other:%d", i), "x", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// collect walks with opts and returns the distinct keys and the batch sizes.
func collect(t *testing.T, rdb redis.UniversalClient, opts scan.Options) (map[string]int, []int, int64) {
	t.Helper()
	seen := map[string]int{}
	var sizes []int
	var mu sync.Mutex
	n, err := scan.Each(context.Background(), rdb, opts, func(_ context.Context, keys []string) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(keys))
		for _, k := range keys {
			seen[k]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen, sizes, n
}

func TestEachMatchTypeAndBatches(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	const n = 2500
	seed(t, r.Client, n)
	seen, sizes, delivered := collect(t, r.Client, scan.Options{Match: "rl:*", Type: "zset", Count: 100, BatchSize: 300})
	if len(seen) != n {
		t.Fatalf("distinct keys = %d, want %d", len(seen), n)
	}
	for k := range seen {
		if strings.HasPrefix(k, "rl:h") || !strings.HasPrefix(k, "rl:") {
			t.Fatalf("key %q does not match rl:* with TYPE zset", k)
		}
	}
	sum := 0
	for _, s := range sizes {
		if s < 1 || s > 300 {
			t.Fatalf("batch of %d keys, want 1..300", s)
		}
		sum += s
	}
	if int64(sum) != delivered || delivered < n {
		t.Fatalf("delivered = %d, batch sum = %d, want both >= %d", delivered, sum, n)
	}
	if len(sizes) < n/300 {
		t.Fatalf("%d batches for %d keys of batch size 300", len(sizes), n)
	}
}

func TestEachWithoutTypeSeesEveryMatchingKey(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	seed(t, r.Client, 500)
	seen, _, _ := collect(t, r.Client, scan.Options{Match: "rl:*"})
	if len(seen) != 1000 {
		t.Fatalf("distinct keys = %d, want 1000 (zsets and hashes)", len(seen))
	}
}

func TestEachRateCap(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	seed(t, r.Client, 1500)
	start := time.Now()
	_, sizes, n := collect(t, r.Client, scan.Options{Match: "rl:*", Type: "zset", MaxKeysPerSecond: 1000, BatchSize: 5000})
	elapsed := time.Since(start)
	if n < 1500 {
		t.Fatalf("delivered %d keys, want 1500", n)
	}
	// 1500 keys at 1000 keys/s cannot take less than 1.5 s (bucket starts empty).
	if elapsed < 1400*time.Millisecond {
		t.Fatalf("1500 keys at 1000 keys/s took %s, want >= 1.4s", elapsed)
	}
	for _, s := range sizes {
		if s > 1000 {
			t.Fatalf("batch of %d keys is more than one second's worth at the cap", s)
		}
	}
}

func TestEachStopsOnCallbackErrorAndContext(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	seed(t, r.Client, 1000)
	boom := errors.New("boom")
	calls := 0
	_, err := scan.Each(context.Background(), r.Client, scan.Options{Match: "rl:*", BatchSize: 10}, func(context.Context, []string) error {
		calls++
		return boom
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want boom after 1", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	_, err = scan.Each(ctx, r.Client, scan.Options{Match: "rl:*", BatchSize: 10}, func(context.Context, []string) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

func TestEachRejectsBadOptions(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	nop := func(context.Context, []string) error { return nil }
	for _, o := range []scan.Options{{Count: -1}, {BatchSize: -1}, {MaxKeysPerSecond: -5}, {Concurrency: -1}} {
		if _, err := scan.Each(context.Background(), r.Client, o, nop); err == nil {
			t.Errorf("Each(%+v) = nil error, want one", o)
		}
	}
	if _, err := scan.Each(context.Background(), r.Client, scan.Options{}, nil); err == nil {
		t.Error("nil callback accepted")
	}
}

func TestEachClusterWalksEveryMasterOneNodePerBatch(t *testing.T) {
	t.Parallel()
	cc := scantest.NewCluster(t)
	ctx := context.Background()
	const n = 3000
	seed(t, cc, n)
	masters, err := scan.Masters(ctx, cc)
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters = %d, %v; want 3", len(masters), err)
	}
	for _, conc := range []int{1, 3} {
		var mu sync.Mutex
		seen := map[string]bool{}
		_, err := scan.Each(ctx, cc, scan.Options{Match: "rl:*", Type: "zset", BatchSize: 256, Concurrency: conc}, func(ctx context.Context, keys []string) error {
			// Every key of the batch must live on one and the same master.
			owner := -1
			for i, m := range masters {
				if m.Exists(ctx, keys[0]).Val() == 1 {
					owner = i
				}
			}
			if owner < 0 {
				return fmt.Errorf("key %q on no master", keys[0])
			}
			pipe := masters[owner].Pipeline()
			for _, k := range keys {
				pipe.Exists(ctx, k)
			}
			cmds, err := pipe.Exec(ctx)
			if err != nil {
				return err
			}
			for i, c := range cmds {
				if c.(*redis.IntCmd).Val() != 1 {
					return fmt.Errorf("key %q of a batch of master %d is not on that master", keys[i], owner)
				}
			}
			mu.Lock()
			for _, k := range keys {
				seen[k] = true
			}
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatalf("concurrency %d: %v", conc, err)
		}
		if len(seen) != n {
			t.Fatalf("concurrency %d: distinct keys = %d, want %d", conc, len(seen), n)
		}
	}
}

// TestEachPaced: with a pacer every key is still delivered, in batches no
// larger than the pacer's, and the pacer sees the batches' rate.
func TestEachPaced(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	const n = 3000
	seed(t, r.Client, n)
	p, err := pace.New(r.Client, pace.Config{MinBatch: 10, MaxBatch: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	seen, sizes, delivered := collect(t, r.Client, scan.Options{Match: "rl:*", Type: "zset", Pacer: p})
	if len(seen) != n || delivered < n {
		t.Fatalf("distinct keys = %d, delivered %d, want %d", len(seen), delivered, n)
	}
	for _, s := range sizes {
		if s > 200 {
			t.Fatalf("batch of %d keys, above the pacer's max_batch 200", s)
		}
	}
	if st := p.Stats(); st.Batch < 10 || st.Batch > 200 {
		t.Fatalf("pacer stats %+v", st)
	}
}
