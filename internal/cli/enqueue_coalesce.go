package cli

import (
	"encoding/json"
	"fmt"

	"github.com/cachekeeper/cachekeeper/tasks"
	ucli "github.com/urfave/cli/v2"
)

// checkCoalesce refuses flags that need a job of its own with
// `enqueue invalidate --coalesce`.
func checkCoalesce(c *ucli.Context) error {
	if len(c.StringSlice("id")) == 0 || c.String("cache") == "" {
		return usagef("--coalesce needs --cache and --id")
	}
	for _, name := range []string{"key", "rewarm", "in", "at", "queue", "task-id", "wait", "wait-timeout"} {
		if c.IsSet(name) {
			return usagef("--coalesce cannot be combined with --%s (a coalesced invalidation is not a job of its own); drop one", name)
		}
	}
	if n := len(c.StringSlice("id")); n > tasks.MaxInvalidateIDs {
		return usagef("--coalesce takes at most %d ids, got %d", tasks.MaxInvalidateIDs, n)
	}
	return nil
}

// invalidateCoalesced adds the ids to the cache's pending invalidations
// (tasks.Client.Invalidate).
func invalidateCoalesced(c *ucli.Context, io IO, svc *services, format string) error {
	ids := c.StringSlice("id")
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	if err := svc.client.Invalidate(c.Context, c.String("cache"), args...); err != nil {
		return flagError(err)
	}
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(map[string]any{"coalesced": true, "cache": c.String("cache"), "ids": len(ids)})
	}
	_, err := fmt.Fprintf(io.Stdout, "added %d ids of cache %s to its pending invalidations (a worker deletes them in fenced batches)\n", len(ids), c.String("cache"))
	return err
}
