package redisx

import (
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
)

// IsCluster reports whether rdb is a Redis Cluster client, whose multi-key
// commands and scripts need all their keys in one hash slot.
func IsCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// SplitBySlot groups keys for multi-key commands. On a *redis.ClusterClient
// it returns one group per hash slot, in order of first appearance; on any
// other client, list itself as the only group (when not empty).
func SplitBySlot(rdb redis.UniversalClient, list []string) [][]string {
	if len(list) == 0 {
		return nil
	}
	if !IsCluster(rdb) {
		return [][]string{list}
	}
	return GroupBySlot(list, func(k string) string { return k })
}

// GroupBySlot groups items by the hash slot of key(item), in order of first
// appearance; the order of items within a group is kept.
func GroupBySlot[T any](items []T, key func(T) string) [][]T {
	index := make(map[int]int, len(items))
	var groups [][]T
	for _, it := range items {
		s := keys.Slot(key(it))
		i, ok := index[s]
		if !ok {
			i = len(groups)
			index[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	return groups
}
