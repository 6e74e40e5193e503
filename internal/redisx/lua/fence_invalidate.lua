-- fence_invalidate.lua: Advances each key's fence to the server clock (strictly increasing) and
-- deletes the keys.
--
-- KEYS     key1, fence1, key2, fence2, ... (each pair in one hash slot)
-- ARGV[1]  fence TTL in milliseconds
-- Returns  the number of keys that existed.
--
-- A key costs one call inside the script: SET ... GET writes the new fence
-- and returns the old one (Redis 6.2+), and is only repeated in the rare
-- case the old fence is not below the clock (two invalidations within one
-- microsecond, or a clock stepped back); the keys are deleted with one DEL
-- per 1,000. The first version (GET, SET, DEL per key) spent three calls
-- and a string.format per key.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%.0f', now)
local ttl = ARGV[1]
local keys = {}
for i = 1, #KEYS, 2 do
  local old = redis.call('SET', KEYS[i + 1], stamp, 'PX', ttl, 'GET')
  if old then
    local cur = tonumber(old)
    if cur and cur >= now then
      redis.call('SET', KEYS[i + 1], string.format('%.0f', cur + 1), 'PX', ttl)
    end
  end
  keys[#keys + 1] = KEYS[i]
end
local deleted = 0
for i = 1, #keys, 1000 do
  deleted = deleted + redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
end
return deleted
