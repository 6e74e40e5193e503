-- fence_invalidate.lua: Advances each key's fence to the server clock (strictly increasing) and
-- deletes the key.
--
-- KEYS     key1, fence1, key2, fence2, ... (each pair in one hash slot)
-- ARGV[1]  fence TTL in milliseconds
-- Returns  the number of keys that existed.
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
