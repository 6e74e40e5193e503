package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of WaitOptions.
const (
	DefaultFallback = 5 * time.Second
)

// WaitOptions configure Drainer.Wait.
type WaitOptions struct {
	// NewBlocking opens the client that runs the BLPOPs, one connection per
	// cache (its pool must hold that many); Wait closes it when ctx ends,
	// which ends the waits at once (required).
	NewBlocking func() (redis.UniversalClient, error)
	// Window is how long a drainer waits after a token before it takes the
	// ids, so that requests arriving together run as one batch: a lone
	// request is delayed by about this much (0: none).
	Window time.Duration
	// Fallback is the longest wait on a wake list: a pass runs then even
	// without a token, which drains ids whose token another worker took
	// before it died (default DefaultFallback).
	Fallback time.Duration
}

// Wait drains each of caches whenever its wake list (Set.Wake) receives a
// token, and at least every Fallback, until ctx ends; it then releases the
// leases it holds and returns nil. It drains every cache once first. On one
// server a single BLPOP waits on every wake list (one connection); on a
// cluster, where their keys are in different slots, one BLPOP per cache.
// Each cache drains on a goroutine of its own.
func (d *Drainer) Wait(ctx context.Context, caches []string, o WaitOptions) error {
	if o.NewBlocking == nil {
		return errors.New("coalesce: WaitOptions.NewBlocking is required")
	}
	if o.Window < 0 {
		return errors.New("coalesce: WaitOptions.Window must not be negative")
	}
	if o.Fallback <= 0 {
		o.Fallback = DefaultFallback
	}
	blocking, err := o.NewBlocking()
	if err != nil {
		return fmt.Errorf("coalesce: open the blocking client: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = blocking.Close() })
	defer func() {
		if stop() {
			_ = blocking.Close()
		}
	}()
	d.DrainAll(ctx, caches)
	// signal[cache] wakes the cache's drain goroutine; a pending signal
	// stands for any number of tokens.
	signal := make(map[string]chan struct{}, len(caches))
	byWake := make(map[string]string, len(caches))
	for _, c := range caches {
		signal[c] = make(chan struct{}, 1)
		byWake[d.Set(c).Wake] = c
	}
	groups := [][]string{caches}
	if _, ok := blocking.(*redis.ClusterClient); ok {
		groups = groups[:0]
		for _, c := range caches {
			groups = append(groups, []string{c})
		}
	}
	var wg sync.WaitGroup
	for _, cache := range caches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-signal[cache]:
				}
				if o.Window > 0 {
					sleep(ctx, o.Window)
				}
				d.drainWaiting(ctx, cache, o.Window)
			}
		}()
	}
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.listen(ctx, blocking, g, byWake, signal, o.Fallback)
		}()
	}
	wg.Wait()
	d.ReleaseAll(ctx, caches)
	return nil
}

// listen blocks on the wake lists of caches and signals the cache whose
// list had a token, or every one of caches when none came within fallback.
func (d *Drainer) listen(ctx context.Context, blocking redis.UniversalClient, caches []string, byWake map[string]string, signal map[string]chan struct{}, fallback time.Duration) {
	wakes := make([]string, len(caches))
	for i, c := range caches {
		wakes[i] = d.Set(c).Wake
	}
	notify := func(c string) {
		select {
		case signal[c] <- struct{}{}:
		default:
		}
	}
	pause := time.Duration(0)
	for ctx.Err() == nil {
		kv, err := blocking.BLPop(ctx, fallback, wakes...).Result()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, redis.Nil): // no token within fallback: a pass anyway
			for _, c := range caches {
				notify(c)
			}
		case err != nil:
			pause = min(max(2*pause, 50*time.Millisecond), time.Second)
			d.report(ctx, caches[0], fmt.Errorf("wait for pending ids: %w", err))
			sleep(ctx, pause)
		default:
			pause = 0
			if c, ok := byWake[kv[0]]; ok {
				notify(c)
			}
		}
	}
}

// drainWaiting drains cache until nothing is left. While another drainer
// holds the lease it tries again, after window and then backing off to
// 100ms, for as long as a lease
// lasts: the holder may have taken its last batch before the ids whose
// token this drainer took were added.
func (d *Drainer) drainWaiting(ctx context.Context, cache string, window time.Duration) {
	deadline := time.Now().Add(d.Lease)
	retry := max(window, time.Millisecond)
	for ctx.Err() == nil {
		_, more, err := d.Drain(ctx, cache)
		switch {
		case errors.Is(err, ErrLeased) && time.Now().Before(deadline):
			sleep(ctx, retry)
			retry = min(2*retry, 100*time.Millisecond)
			continue
		case more:
			continue
		}
		d.report(ctx, cache, err)
		return
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
