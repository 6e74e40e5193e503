package scan

import (
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
)

// SplitBySlot groups keys for multi-key commands. On a *redis.ClusterClient
// it returns one group per hash slot, in order of first appearance; on any
// other client, keys itself as the only group (when not empty).
func SplitBySlot(rdb redis.UniversalClient, list []string) [][]string {
	if len(list) == 0 {
		return nil
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return [][]string{list}
	}
	index := make(map[int]int, len(list))
	var groups [][]string
	for _, k := range list {
		s := keys.Slot(k)
		i, ok := index[s]
		if !ok {
			i = len(groups)
			index[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], k)
	}
	return groups
}
