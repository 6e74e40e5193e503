package coalesce_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/cachekeeper/cachekeeper/internal/coalesce"
	"github.com/cachekeeper/cachekeeper/internal/invalidate"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// helperEnv makes the test binary a drainer that dies mid-batch (see
// runCrashingDrainer).
const helperEnv = "CACHEKEEPER_COALESCE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runCrashingDrainer())
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// invalidator is the engine the worker runs coalesced invalidations with,
// for the cache "user" ("user:{id}").
func invalidator(rdb redis.UniversalClient) (*invalidate.Invalidator, error) {
	return invalidate.New(rdb, keys.Default(), time.Hour, map[string]invalidate.Cache{"user": {Key: "user:{id}"}})
}

func drainer(rdb redis.UniversalClient, run coalesce.Batch, lease time.Duration) (*coalesce.Drainer, error) {
	d := &coalesce.Drainer{
		Redis: rdb,
		Set:   func(cache string) coalesce.Set { return coalesce.InvalidateSet(keys.Default(), cache) },
		Run:   run, What: "invalidations", Lease: lease, MaxSize: 1000,
	}
	return d, d.Init()
}

// runCrashingDrainer is main of the helper process: it takes one batch,
// deletes the first half of its keys (fenced, as the worker does), writes
// the marker key "helper:mid", and waits to be killed.
func runCrashingDrainer() int {
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: os.Getenv("HELPER_SOCK")})
	inv, err := invalidator(rdb)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	batch := inv.Batch(invalidate.Coalesced{})
	d, err := drainer(rdb, func(ctx context.Context, cache string, ids []string) error {
		if err := batch(ctx, cache, ids[:len(ids)/2]); err != nil {
			return err
		}
		rdb.Set(ctx, "helper:mid", strconv.Itoa(len(ids)), 0)
		time.Sleep(time.Hour) // killed here, mid-batch
		return nil
	}, time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _, err = d.Drain(context.Background(), "user")
	fmt.Fprintln(os.Stderr, "drain returned:", err)
	return 1
}

// A worker killed by SIGKILL in the middle of a batch loses nothing: the
// ids stay pending until their keys are deleted, and the next drainer
// (here after the dead one's lease expired) deletes every key.
func TestKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	if !strings.HasPrefix(r.URL, "unix://") {
		t.Skip("needs the private redis-server on a unix socket")
	}
	ctx := context.Background()
	rdb := r.Client
	const n = 400
	set := coalesce.InvalidateSet(keys.Default(), "user")
	ids := make([]string, n)
	for i := range n {
		ids[i] = strconv.Itoa(i)
		rdb.HSet(ctx, "user:"+ids[i], "id", i)
	}
	if err := coalesce.Add(ctx, rdb, set, ids); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "HELPER_SOCK="+strings.TrimPrefix(r.URL, "unix://"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	waitFor(t, 30*time.Second, func() bool { return rdb.Exists(ctx, "helper:mid").Val() == 1 }, func() string { return stderr.String() })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	gone := 0
	for i := range n {
		if rdb.Exists(ctx, "user:"+ids[i]).Val() == 0 {
			gone++
		}
	}
	pending := rdb.ZCard(ctx, set.Pending).Val()
	t.Logf("killed mid-batch (batch of %s ids): %d keys deleted, %d ids still pending", rdb.Get(ctx, "helper:mid").Val(), gone, pending)
	if gone != n/2 || pending != n {
		t.Fatalf("after the kill: %d keys deleted and %d pending, want %d and %d", gone, pending, n/2, n)
	}

	inv, err := invalidator(rdb)
	if err != nil {
		t.Fatal(err)
	}
	d, err := drainer(rdb, inv.Batch(invalidate.Coalesced{}), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- d.Wait(wctx, []string{"user"}, coalesce.WaitOptions{
			NewBlocking: func() (redis.UniversalClient, error) { return redis.NewClient(rdb.Options()), nil },
			Fallback:    200 * time.Millisecond,
		})
	}()
	start := time.Now()
	waitFor(t, 10*time.Second, func() bool { return rdb.ZCard(ctx, set.Pending).Val() == 0 }, nil)
	t.Logf("the next drainer emptied the set %s after the kill (the dead one's lease: 1s)", time.Since(start).Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := "user:" + ids[i]
		if rdb.Exists(ctx, k).Val() != 0 {
			t.Fatalf("%s still cached", k)
		}
		if rdb.Exists(ctx, keys.Default().Fence(k)).Val() != 1 {
			t.Fatalf("%s has no fence", k)
		}
	}
}

// Wait wakes on the token Add pushes: ids added one call at a time are run
// within milliseconds, in fewer batches than calls, and an idle drainer
// sends about one command per Fallback.
func TestWaitWakesOnAddAndIdlesQuietly(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	rdb := r.Client
	var mu sync.Mutex
	var batches [][]string
	ran := map[string]time.Time{}
	d, err := drainer(rdb, func(_ context.Context, _ string, ids []string) error {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, ids)
		for _, id := range ids {
			ran[id] = time.Now()
		}
		return nil
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- d.Wait(wctx, []string{"user", "org"}, coalesce.WaitOptions{
			NewBlocking: func() (redis.UniversalClient, error) { return redis.NewClient(rdb.Options()), nil },
			Window:      2 * time.Millisecond,
			Fallback:    time.Second,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(100 * time.Millisecond) // the first pass and the BLPOP
	set := coalesce.InvalidateSet(keys.Default(), "user")
	added := map[string]time.Time{}
	const n = 200
	for i := range n {
		id := strconv.Itoa(i)
		added[id] = time.Now()
		if err := coalesce.Add(ctx, rdb, set, []string{id}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(ran) == n }, nil)
	mu.Lock()
	var worst time.Duration
	for id, at := range added {
		worst = max(worst, ran[id].Sub(at))
	}
	nb := len(batches)
	mu.Unlock()
	t.Logf("%d single-id adds ran in %d batches; slowest add to run: %s", n, nb, worst)
	if nb >= n {
		t.Fatalf("%d batches for %d adds: not coalesced", nb, n)
	}
	if worst > 2*time.Second {
		t.Fatalf("an add waited %s: the drainer does not wake on the token", worst)
	}
	if l := rdb.LLen(ctx, set.Wake).Val(); l > 1 {
		t.Fatalf("wake list holds %d tokens, want at most 1", l)
	}
	// Idle: count the commands the server runs for 2s.
	before := totalCalls(t, rdb)
	time.Sleep(2 * time.Second)
	idle := totalCalls(t, rdb) - before - 1 // the INFO of the second count
	t.Logf("idle drainer of 2 caches: %d commands in 2s", idle)
	if idle > 10 {
		t.Fatalf("idle drainer sent %d commands in 2s, want a few (one BLPOP per second)", idle)
	}
}

// totalCalls sums the calls of every command the server ran.
func totalCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		if i := strings.Index(line, "calls="); i >= 0 {
			v := line[i+len("calls="):]
			if j := strings.IndexByte(v, ','); j >= 0 {
				v = v[:j]
			}
			c, _ := strconv.Atoi(v)
			total += c
		}
	}
	return total
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if why != nil {
				msg = why()
			}
			t.Fatalf("condition not met within %s %s", d, msg)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
