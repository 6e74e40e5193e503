package fence

import "github.com/cachekeeper/cachekeeper/internal/keys"

// slot returns the Redis Cluster hash slot of key (CRC16/XMODEM mod 16384,
// of the hash tag when there is one).
func slot(key string) int {
	if tag, ok := keys.HashTag(key); ok {
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
