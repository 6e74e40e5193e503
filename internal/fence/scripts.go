package fence

import "github.com/redis/go-redis/v9"

// writeScript replaces cached hashes whose fence is older than the stamp.
//
// KEYS: key1, fence1, key2, fence2, ...
// ARGV: stamp_us, max_age_us, then per key: ttl_ms, n, field1, value1, ... fieldn, valuen
// (n = 0 deletes the key: the row is gone).
// Returns {written, deleted, skipped, too_old, skipped_index...}.
var writeScript = redis.NewScript(`
local since = tonumber(ARGV[1])
local maxage = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tooold = 0
if now - since > maxage then tooold = 1 end
local written, deleted, skipped = 0, 0, 0
local out = {0, 0, 0, tooold}
local a = 3
for i = 1, #KEYS, 2 do
  local key = KEYS[i]
  local ttl = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local f = redis.call('GET', KEYS[i + 1])
  if tooold == 1 or (f and tonumber(f) >= since) then
    skipped = skipped + 1
    out[#out + 1] = (i + 1) / 2
  elseif n == 0 then
    deleted = deleted + redis.call('DEL', key)
  else
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(ARGV, a, a + 2 * n - 1))
    redis.call('PEXPIRE', key, ttl)
    written = written + 1
  end
  a = a + 2 * n
end
out[1], out[2], out[3] = written, deleted, skipped
return out
`)

// invalidateScript advances each key's fence to the server clock (strictly
// increasing) and deletes the key.
//
// KEYS: key1, fence1, key2, fence2, ...
// ARGV: fence_ttl_ms
// Returns the number of keys that existed.
var invalidateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deleted = 0
for i = 1, #KEYS, 2 do
  local v = now
  local cur = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if cur >= v then v = cur + 1 end
  redis.call('SET', KEYS[i + 1], string.format('%.0f', v), 'PX', ARGV[1])
  deleted = deleted + redis.call('DEL', KEYS[i])
end
return deleted
`)
