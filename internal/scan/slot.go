package scan

import "github.com/redis/go-redis/v9"

// Slot returns the Redis Cluster hash slot of key: CRC16/XMODEM of the key,
// or of its hash tag when it has one, modulo 16384.
func Slot(key string) int {
	if tag, ok := hashTag(key); ok {
		key = tag
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// hashTag is the text between the first '{' and the next '}', when not empty.
func hashTag(key string) (string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return "", false
				}
				return key[i+1 : j], true
			}
		}
		return "", false
	}
	return "", false
}

// SplitBySlot groups keys for multi-key commands. On a *redis.ClusterClient
// it returns one group per hash slot, in order of first appearance; on any
// other client, keys itself as the only group (when not empty).
func SplitBySlot(rdb redis.UniversalClient, keys []string) [][]string {
	if len(keys) == 0 {
		return nil
	}
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return [][]string{keys}
	}
	index := make(map[int]int, len(keys))
	var groups [][]string
	for _, k := range keys {
		s := Slot(k)
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
