package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// TagResult counts what a tag invalidation did.
type TagResult struct {
	// Members is how many keys the tag set listed.
	Members int64 `json:"members"`
	// Deleted is how many of those keys existed and were deleted.
	Deleted int64 `json:"deleted"`
	// Sample lists up to the requested number of member keys.
	Sample []string `json:"-"`
}

// Tag deletes every key carrying tag, and the tag set:
//
//  1. in one atomic step, the tag's fence is advanced and the set's members
//     are moved to a hold set named after job, so that keys tagged from then
//     on go to a fresh set (fence.CaptureTag);
//  2. the held members are invalidated like Keys (fence advanced, key
//     deleted), SSCAN page by page;
//  3. the hold set is deleted.
//
// A retry with the same job finds the hold set an interrupted run left and
// finishes it. job may be empty (a random one is used). sample is how many
// member keys to return in TagResult.Sample.
func (v *Invalidator) Tag(ctx context.Context, tag, job string, sample int) (TagResult, error) {
	if tag == "" {
		return TagResult{}, fmt.Errorf("%w: empty tag", ErrInvalidRequest)
	}
	if job == "" {
		job = randomID()
	}
	set, hold := v.keys.Tag(tag), v.keys.TagHold(tag, job)
	var res TagResult
	n, err := v.fence.CaptureTag(ctx, set, hold, v.keys.TagFence(tag))
	if err != nil {
		return res, err
	}
	res.Members = n
	var cursor uint64
	count := int64(BatchSize)
	if n := v.pacer.Batch(); n > 0 {
		count = int64(n) // Keys below paces each page
	}
	for n > 0 {
		var members []string
		members, cursor, err = v.rdb.SScan(ctx, hold, cursor, "", count).Result()
		if err != nil {
			return res, fmt.Errorf("invalidate tag %q: read members: %w", tag, err)
		}
		if len(res.Sample) < sample {
			res.Sample = append(res.Sample, members[:min(len(members), sample-len(res.Sample))]...)
		}
		existed, err := v.Keys(ctx, members)
		res.Deleted += int64(existed)
		if err != nil {
			return res, fmt.Errorf("invalidate tag %q: %w", tag, err)
		}
		if cursor == 0 {
			break
		}
	}
	if err := v.rdb.Del(ctx, hold).Err(); err != nil {
		return res, fmt.Errorf("invalidate tag %q: delete hold set: %w", tag, err)
	}
	return res, nil
}

// PruneResult counts what pruning did.
type PruneResult struct {
	// Sets is how many tag sets were walked.
	Sets int64 `json:"sets"`
	// Members is how many members were checked.
	Members int64 `json:"members"`
	// Pruned is how many members were removed because their key is gone.
	Pruned int64 `json:"pruned"`
}

func (a *PruneResult) add(b PruneResult) {
	a.Sets += b.Sets
	a.Members += b.Members
	a.Pruned += b.Pruned
}

// PruneTag removes from the tag set setKey the members whose key no longer
// exists (expired, invalidated, deleted), SSCAN page by page, so that tag
// sets of long-lived tags do not grow without bound. limit, when not nil,
// caps the members checked per second; when v is Paced, its pacer sets the
// page size and the pause between pages.
//
// A warm adds a key to its tag sets before it writes the key. For each page
// pruning checks EXISTS, then SREMs the members found missing, then
// invalidates them (fence advanced, key deleted) in that order, each step
// after the previous one finished: a warm that wrote one of those keys in
// between sees its key deleted, and one still in flight has its write
// refused by the fence, so no key is ever left existing outside its tag set.
// The price is one fence key (living fence.ttl) per pruned member.
func (v *Invalidator) PruneTag(ctx context.Context, setKey string, limit *rate.Limiter) (PruneResult, error) {
	res := PruneResult{Sets: 1}
	pacer := v.pacer
	var cursor uint64
	for {
		count := int64(BatchSize / 2)
		if n := pacer.Batch(); n > 0 {
			count = int64(n)
		}
		members, next, err := v.rdb.SScan(ctx, setKey, cursor, "", count).Result()
		if err != nil {
			return res, fmt.Errorf("prune tag set %q: %w", setKey, err)
		}
		if limit != nil && len(members) > 0 {
			if err := limit.WaitN(ctx, min(len(members), limit.Burst())); err != nil {
				return res, err
			}
		}
		res.Members += int64(len(members))
		err = pacer.Do(ctx, len(members), func(ctx context.Context) error {
			gone, err := v.missing(ctx, members)
			if err != nil || len(gone) == 0 {
				return err
			}
			args := make([]any, len(gone))
			for i, m := range gone {
				args[i] = m
			}
			n, err := v.rdb.SRem(ctx, setKey, args...).Result()
			if err != nil {
				return err
			}
			res.Pruned += n
			_, err = v.keysPaced(ctx, nil, gone) // the page is paced as a whole
			return err
		})
		if err != nil {
			return res, fmt.Errorf("prune tag set %q: %w", setKey, err)
		}
		cursor = next
		if cursor == 0 {
			return res, nil
		}
	}
}

// missing returns the keys that do not exist, with one pipelined EXISTS each
// (the keys may live on different cluster slots).
func (v *Invalidator) missing(ctx context.Context, keyList []string) ([]string, error) {
	if len(keyList) == 0 {
		return nil, nil
	}
	pipe := v.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keyList))
	for i, k := range keyList {
		cmds[i] = pipe.Exists(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	var gone []string
	for i, c := range cmds {
		if c.Val() == 0 {
			gone = append(gone, keyList[i])
		}
	}
	return gone, nil
}

// PruneTags prunes every tag set (see PruneTag), walking them with SCAN on
// every master. maxMembersPerSecond caps the members checked per second
// (0: no cap).
func (v *Invalidator) PruneTags(ctx context.Context, maxMembersPerSecond int) (PruneResult, error) {
	var limit *rate.Limiter
	if maxMembersPerSecond > 0 {
		limit = rate.NewLimiter(rate.Limit(maxMembersPerSecond), max(maxMembersPerSecond, BatchSize/2))
	}
	var total PruneResult
	// The walk over the sets is not paced: PruneTag paces the members.
	_, err := scan.Each(ctx, v.rdb, scan.Options{Match: v.keys.TagPattern(), Type: "set", BatchSize: 100, Internal: true}, func(ctx context.Context, sets []string) error {
		for _, s := range sets {
			r, err := v.PruneTag(ctx, s, limit)
			total.add(r)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return total, err
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PruneTagsIfDue runs PruneTags unless another caller did within every: a
// marker key (keys.TagPruneMarker) living every is set first, so a fleet of
// workers prunes once per interval whichever worker gets there. It reports
// whether it ran.
func (v *Invalidator) PruneTagsIfDue(ctx context.Context, every time.Duration, maxMembersPerSecond int) (PruneResult, bool, error) {
	ok, err := v.rdb.SetNX(ctx, v.keys.TagPruneMarker(), time.Now().UTC().Format(time.RFC3339), every).Result()
	if err != nil {
		return PruneResult{}, false, fmt.Errorf("prune tag sets: %w", err)
	}
	if !ok {
		return PruneResult{}, false, nil
	}
	res, err := v.PruneTags(ctx, maxMembersPerSecond)
	return res, true, err
}
