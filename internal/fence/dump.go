package fence

import (
	"encoding/binary"
	"hash/crc64"
)

// Whole-hash writes by RESTORE: the new hash is sent in Redis's DUMP format,
// so that replacing a cached key with its TTL is one command (RESTORE key ttl
// payload REPLACE) instead of DEL, HSET and PEXPIRE. The payload is the
// plain RDB hash encoding (type 4: length, then field and value strings)
// that every Redis since 5.0 loads (into its compact encoding when small),
// stamped with RDB version 9 and the CRC-64/Jones checksum RESTORE verifies.

const (
	rdbTypeHash = 4
	rdbVersion  = 9
)

// crcJones is the CRC-64/Jones table (reflected polynomial 0x95ac9329ac4bc9b5).
var crcJones = crc64.MakeTable(0x95ac9329ac4bc9b5)

// redisCRC64 is Redis's crc64: CRC-64/Jones with zero initial value and no
// final xor (Go's crc64.Update inverts on entry and exit, hence the ^).
func redisCRC64(p []byte) uint64 { return ^crc64.Update(^uint64(0), crcJones, p) }

// hashDump encodes fields (name, value, name, value...) as a DUMP payload.
func hashDump(fields []string) []byte {
	n := 1 + 9
	for _, f := range fields {
		n += 5 + len(f)
	}
	b := make([]byte, 0, n+10)
	b = append(b, rdbTypeHash)
	b = appendLen(b, uint64(len(fields)/2))
	for _, f := range fields {
		b = appendLen(b, uint64(len(f)))
		b = append(b, f...)
	}
	b = binary.LittleEndian.AppendUint16(b, rdbVersion)
	return binary.LittleEndian.AppendUint64(b, redisCRC64(b))
}

// appendLen is rdbSaveLen: 6-bit, 14-bit, 32-bit or 64-bit length.
func appendLen(b []byte, n uint64) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(n>>8)|0x40, byte(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0x80), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0x81), n)
}
