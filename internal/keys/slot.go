package keys

import (
	"strconv"
	"sync"
)

// Slot returns the Redis Cluster hash slot of key: CRC16/XMODEM of the key,
// or of its hash tag when it has one (see HashTag), modulo 16384.
func Slot(key string) int {
	if tag, ok := HashTag(key); ok {
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

// SlotTag returns a short hash tag whose key hashes to slot (0-16383): a key
// that contains "{"+SlotTag(s)+"}" lives in slot s. It names per-slot copies
// of a key that a script on any slot must read (CacheFence on a cluster).
func SlotTag(slot int) string {
	slotTagsOnce.Do(func() {
		found := 0
		for n := 0; found < len(slotTags); n++ {
			tag := strconv.FormatInt(int64(n), 36)
			if s := Slot(tag); slotTags[s] == "" {
				slotTags[s] = tag
				found++
			}
		}
	})
	return slotTags[slot&16383]
}

var (
	slotTagsOnce sync.Once
	slotTags     [16384]string
)
