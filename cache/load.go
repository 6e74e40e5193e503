package cache

import (
	"context"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// specLoad loads by the cache's by_ids query, rendered as the worker renders
// it, with the tags the row joins.
func (r *Reader) specLoad(c *cacheState) loadFunc {
	return func(ctx context.Context, id string) (loaded, error) {
		b, err := c.spec.ReadIDs(ctx, r.opts.DB, []string{id})
		if err != nil {
			return loaded{}, err
		}
		if b.Rows == 0 || len(b.Entries) == 0 || len(b.Entries[0].Fields) == 0 {
			return loaded{}, ErrNotFound
		}
		return loaded{fields: b.Entries[0].Fields, tags: b.Tags}, nil
	}
}

// keysSlotTag is the slot tag of key's cluster slot (keys.CacheFence).
func keysSlotTag(key string) string { return keys.SlotTag(keys.Slot(key)) }
