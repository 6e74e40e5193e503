package fence

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Tags. A tag set (keys.Tag) lists the cache keys carrying a tag; a warm adds
// a key to its tag sets before it writes the key, so a key never exists
// outside the tag sets it carries. Invalidating a tag (CaptureTag) advances
// the tag's fence (keys.TagFence) to the server clock and moves the set's
// members aside atomically, so keys tagged from then on go to a fresh set;
// the caller then invalidates the captured members with Invalidate.
//
// A warm whose database read began before the tag invalidation but whose
// keys reached the tag set only after the capture is not stopped by the
// members' fences (they were not captured). FencedTags lets the warm see
// that: after its write, it asks which of the tags it added have a fence
// newer than its stamp and invalidates the keys it wrote under those tags.

// CaptureTag advances the fence of the tag whose set is setKey (fenceKey,
// see keys.TagFence) and moves the set's members into holdKey, in one atomic
// step; the three keys must share a cluster slot. The hold set keeps its
// members for the fence TTL, so that a retried invalidation finds what an
// interrupted one left. It returns how many members the hold set has.
func (f *Fencer) CaptureTag(ctx context.Context, setKey, holdKey, fenceKey string) (int64, error) {
	ttl := strconv.FormatInt(f.ttl.Milliseconds(), 10)
	n, err := redisx.FenceTagCapture.Run(ctx, f.rdb, []string{setKey, holdKey, fenceKey}, ttl, ttl).Int64()
	if err != nil {
		return 0, fmt.Errorf("fence: capture tag set %q: %w", setKey, err)
	}
	return n, nil
}

// FencedTags returns the tag fence keys (keys.TagFence) whose tag was
// invalidated at or after st was taken (or on a master st has no clock of).
// A warm calls it right after a write that was not TooOld (so no fence newer
// than st can have expired yet), for the tags it added keys to, and
// invalidates its keys of every tag returned.
func (f *Fencer) FencedTags(ctx context.Context, st Stamp, fenceKeys []string) ([]string, error) {
	if len(fenceKeys) == 0 {
		return nil, nil
	}
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(fenceKeys))
	for i, k := range fenceKeys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("fence: read tag fences: %w", err)
	}
	var out []string
	for i, c := range cmds {
		since, err := f.stampFor(ctx, st, fenceKeys[i])
		if err != nil {
			return nil, err
		}
		v, err := c.Int64()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fence: tag fence %q: %w", fenceKeys[i], err)
		}
		if v >= since {
			out = append(out, fenceKeys[i])
		}
	}
	return out, nil
}

// stampFor is the stamp's clock on the master owning key.
func (f *Fencer) stampFor(ctx context.Context, st Stamp, key string) (int64, error) {
	if f.cluster == nil {
		return st.single, nil
	}
	c, err := f.cluster.MasterForKey(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("fence: find master: %w", err)
	}
	us, ok := st.byAddr[c.Options().Addr]
	if !ok {
		return math.MinInt64 / 2, nil // unstamped master: take the tag as fenced
	}
	return us, nil
}
