package invalidate

import (
	"context"
	"errors"
	"log/slog"
	"sort"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/coalesce"
)

// ByID returns the declared caches whose keys are made of the id alone,
// sorted: those whose single-id invalidations can be coalesced.
func (v *Invalidator) ByID() []string {
	var out []string
	for name, c := range v.caches {
		if c.byID {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Coalesced configures the batches of coalesced invalidations.
type Coalesced struct {
	// Publisher publishes one event per batch, naming every key (nil:
	// events disabled).
	Publisher *events.Publisher
	// OnBatch, when set, is called after each batch's keys are deleted and
	// its event published, with how many of the keys existed.
	OnBatch func(cache string, ids []string, existed int)
	Logger  *slog.Logger
}

// Batch returns the coalesce.Batch that invalidates ids of a cache: their
// keys deleted with their fences advanced (Keys, BatchSize keys per script
// call), then one events.TypeInvalidated event. Ids of a cache that cannot
// be invalidated by id (no retry helps) are logged at error level and
// dropped.
func (v *Invalidator) Batch(o Coalesced) coalesce.Batch {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, cache string, ids []string) error {
		keyList, err := v.KeysFor(cache, ids)
		if errors.Is(err, ErrInvalidRequest) {
			o.Logger.LogAttrs(ctx, slog.LevelError, "coalesced invalidations dropped: "+err.Error(),
				slog.String("cache", cache), slog.Int("ids", len(ids)))
			return nil
		}
		if err != nil {
			return err
		}
		existed, err := v.Keys(ctx, keyList)
		if err != nil {
			return err
		}
		if err := o.Publisher.Publish(ctx, events.Event{
			Type: events.TypeInvalidated, Cache: cache, IDs: ids, Keys: keyList, KeyCount: len(keyList),
		}); err != nil {
			return err
		}
		if o.OnBatch != nil {
			o.OnBatch(cache, ids, existed)
		}
		o.Logger.LogAttrs(ctx, slog.LevelDebug, "coalesced invalidations", slog.String("cache", cache),
			slog.Int("keys", len(keyList)), slog.Int("existed", existed))
		return nil
	}
}
