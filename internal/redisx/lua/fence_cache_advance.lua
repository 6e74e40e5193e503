-- fence_cache_advance.lua: Advances the fences of whole caches to the server clock (strictly
-- increasing), for pattern invalidation.
--
-- KEYS     cache fence 1 ... cache fence M (keys.CacheFence, all in one hash slot)
-- ARGV[1]  fence TTL in milliseconds
-- Returns  M.
--
-- Every fenced write of a cache reads the cache's fence beside its keys' own
-- (fence_write.lua, fence_restore.lua), so once this returns no warm whose
-- database read began before can write any key of the cache: pattern
-- invalidation calls it once, before its walk, and then deletes the keys it
-- finds with plain UNLINK instead of one fence per key.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%.0f', now)
for i = 1, #KEYS do
  local old = redis.call('SET', KEYS[i], stamp, 'PX', ARGV[1], 'GET')
  local cur = tonumber(old or '0')
  if cur and cur >= now then
    redis.call('SET', KEYS[i], string.format('%.0f', cur + 1), 'PX', ARGV[1])
  end
end
return #KEYS
