// Package invalidate deletes cached keys so that no in-flight warm can write
// a stale value back: by key (each key's fence advanced and the key deleted
// in one atomic step), by SCAN pattern (every master of a cluster, UNLINK in
// batches, fenced for keys of declared caches) and by tag (the tag set
// captured atomically, its members fenced). It also prunes tag sets of
// members whose key is gone.
//
// It is the engine of the worker's cache:invalidate* handlers, kept apart
// from them so that the benchmark runs exactly the same code.
package invalidate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/fence"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/pace"
	"github.com/redis/go-redis/v9"
)

// BatchSize is how many keys one fenced invalidation script or one UNLINK
// carries: big enough to cost few round trips, small enough that no single
// command holds Redis for more than about a millisecond.
const BatchSize = 1000

// ErrInvalidRequest is wrapped by errors that retrying cannot fix (an
// unknown cache, ids for a cache whose key cannot be built from an id).
var ErrInvalidRequest = errors.New("invalid invalidation request")

// Cache is what the invalidator needs of a declared cache.
type Cache struct {
	// Key is the key template ("user:{id}").
	Key string
	// IDColumn is the id column (default "id"). Invalidation by ids needs a
	// template whose placeholders all name it.
	IDColumn string
}

// Invalidator deletes cached keys. It is safe for concurrent use.
type Invalidator struct {
	rdb  redis.UniversalClient
	keys keys.Keys
	// rule says which keys no invalidation touches, unless the job's
	// context carries a guard with a rule of its own (keys.WithGuard).
	rule   keys.Rule
	fence  *fence.Fencer
	caches map[string]*cache
	// names are the declared caches, sorted, for error messages.
	names []string
	// pacer paces Keys, Tag and tag pruning (Paced); nil: unpaced.
	pacer *pace.Pacer
}

// Paced returns a copy of v whose Keys, Tag, Pattern (unless its options
// carry a pacer) and tag pruning are paced by p (nil: unpaced). The worker
// makes one per maintenance job.
func (v *Invalidator) Paced(p *pace.Pacer) *Invalidator {
	c := *v
	c.pacer = p
	return &c
}

type cache struct {
	name string
	tpl  keys.Template
	// byID is false when the key cannot be rendered from an id alone;
	// whyNot says why.
	byID   bool
	whyNot string
}

// New returns an invalidator over rdb. fenceTTL is the fence lifetime (the
// worker's fence.ttl); caches are the declared caches by name.
func New(rdb redis.UniversalClient, k keys.Keys, fenceTTL time.Duration, caches map[string]Cache) (*Invalidator, error) {
	f, err := fence.New(rdb, k, fenceTTL)
	if err != nil {
		return nil, err
	}
	v := &Invalidator{rdb: rdb, keys: k, rule: k.Rule(), fence: f, caches: make(map[string]*cache, len(caches))}
	for name, c := range caches {
		tpl, err := keys.ParseTemplate(c.Key)
		if err != nil {
			return nil, fmt.Errorf("caches.%s.key: %w", name, err)
		}
		idCol := c.IDColumn
		if idCol == "" {
			idCol = "id"
		}
		cc := &cache{name: name, tpl: tpl, byID: true}
		for _, p := range tpl.Placeholders() {
			if p != idCol {
				cc.byID = false
				cc.whyNot = fmt.Sprintf("its key template %q has {%s}, which is not the id column %q; invalidate by keys instead", c.Key, p, idCol)
				break
			}
		}
		v.caches[name] = cc
		v.names = append(v.names, name)
	}
	sort.Strings(v.names)
	return v, nil
}

// KeysFor renders the keys of ids in cache.
func (v *Invalidator) KeysFor(cacheName string, ids []string) ([]string, error) {
	c, ok := v.caches[cacheName]
	if !ok {
		known := "none are configured"
		if len(v.names) > 0 {
			known = "configured: " + strings.Join(v.names, ", ")
		}
		return nil, fmt.Errorf("%w: unknown cache %q (%s)", ErrInvalidRequest, cacheName, known)
	}
	if !c.byID {
		return nil, fmt.Errorf("%w: cache %q cannot be invalidated by ids: %s", ErrInvalidRequest, cacheName, c.whyNot)
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = c.tpl.RenderOne(id)
	}
	return out, nil
}

// CacheOf returns the one declared cache whose template matches every key,
// and the ids the keys hold, when that is unambiguous.
func (v *Invalidator) CacheOf(keyList []string) (string, []string, bool) {
	if len(keyList) == 0 {
		return "", nil, false
	}
	var found *cache
	for _, name := range v.names {
		c := v.caches[name]
		if !c.byID {
			continue
		}
		if _, ok := c.tpl.Match(keyList[0]); !ok {
			continue
		}
		if found != nil {
			return "", nil, false // two caches claim the key
		}
		found = c
	}
	if found == nil {
		return "", nil, false
	}
	ids := make([]string, len(keyList))
	for i, k := range keyList {
		m, ok := found.tpl.Match(k)
		if !ok {
			return "", nil, false
		}
		for _, val := range m {
			ids[i] = val
			break
		}
	}
	return found.name, ids, true
}

// isCacheKey reports whether key has the shape of a declared cache's key,
// that is, whether a warm may write it.
func (v *Invalidator) isCacheKey(key string) bool {
	for _, c := range v.caches {
		if _, ok := c.tpl.Match(key); ok {
			return true
		}
	}
	return false
}

// ruleFor returns the internal-key rule a call runs under.
func (v *Invalidator) ruleFor(ctx context.Context) keys.Rule {
	if g := keys.GuardFrom(ctx); g != nil {
		return g.Rule
	}
	return v.rule
}

// Keys advances the fence of each key and deletes it, atomically per key,
// in batches of BatchSize (one round trip each), or of the pacer's batch
// size when v is Paced. It returns how many of the keys existed. Repeating
// it is harmless. Internal keys (keys.Rule) are left alone and counted in
// the context's guard.
func (v *Invalidator) Keys(ctx context.Context, keyList []string) (int, error) {
	return v.keysPaced(ctx, v.pacer, keyList)
}

// keysPaced is Keys paced by p (nil: unpaced).
func (v *Invalidator) keysPaced(ctx context.Context, p *pace.Pacer, keyList []string) (int, error) {
	keyList, skipped := v.ruleFor(ctx).Split(keyList)
	keys.GuardFrom(ctx).Skip(skipped)
	total := 0
	err := pace.Chunks(ctx, p, BatchSize, keyList, func(ctx context.Context, chunk []string) error {
		existed, err := v.fence.Invalidate(ctx, chunk)
		total += existed
		return err
	})
	return total, err
}
