-- warm_drain_take.lua: Returns up to ARGV[3] of the oldest pending ids of a cache, flat as id,
-- score, id, score..., and renews the lease of owner ARGV[1] for ARGV[2] ms.
--
-- KEYS     pending set, lease
-- ARGV     owner, lease_ms, max
-- Returns  false when another worker holds the lease, an empty list
--          (releasing the caller's lease) when nothing is pending.
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return false end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
if #ids == 0 then
  if owner then redis.call('DEL', KEYS[2]) end
  return {}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return ids
