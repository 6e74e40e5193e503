-- lease_fill.lua: The lease holder's fenced fill (function ck1_fill of cachekeeper_v1; see
-- docs/read-protocol.md): writes the hash unless the key or its cache was invalidated after
-- the lease was granted, then releases the lease and wakes its waiters.
--
-- KEYS[1]  the cached key, KEYS[2] its lease, KEYS[3] its wake list, KEYS[4] its fence
--          (keys.Fence), KEYS[5] its cache's fence (keys.CacheFence, in the key's slot)
-- ARGV[1]  token, ARGV[2] the grant's stamp_us, ARGV[3] max age of the grant in ms (at most
--          the fence TTL), ARGV[4] the key's TTL in ms, then field, value, ... (none: the row
--          is gone, the key is deleted)
-- Returns  1 written, 0 refused by a fence, -1 refused because the grant is too old.
--
-- The fences are compared as fence_write.lua compares them: a fence at or after the stamp
-- refuses. The lease is deleted when it is still the token's; a written fill also wakes the
-- waiters of another token's lease (they will find the value). The wake list lives 10s.
local since = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local status = 1
if now - since > tonumber(ARGV[3]) * 1000 then
  status = -1
else
  local f = redis.call('MGET', KEYS[4], KEYS[5])
  for i = 1, 2 do
    if f[i] and tonumber(f[i]) >= since then status = 0 end
  end
end
if status == 1 then
  redis.call('DEL', KEYS[1])
  if #ARGV > 4 then
    redis.call('HSET', KEYS[1], unpack(ARGV, 5))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
end
local l = redis.call('HMGET', KEYS[2], 'token', 'waiters')
if l[1] and (l[1] == ARGV[1] or status == 1) then
  local n = tonumber(l[2] or '0') or 0
  if l[1] == ARGV[1] then
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[2], 'waiters', '0')
  end
  if n > 10000 then n = 10000 end
  while n > 0 do
    local m = math.min(n, 1000)
    local batch = {}
    for i = 1, m do batch[i] = '1' end
    redis.call('RPUSH', KEYS[3], unpack(batch))
    n = n - m
  end
  redis.call('PEXPIRE', KEYS[3], 10000)
end
return status
