-- lease_release.lua: Gives a lease back without writing (function ck1_release of
-- cachekeeper_v1; see docs/read-protocol.md): the load failed or found no row.
--
-- KEYS[1]  the lease, KEYS[2] its wake list
-- ARGV[1]  token
-- Returns  1 released (and its waiters woken), 0 the token did not hold the lease.
local l = redis.call('HMGET', KEYS[1], 'token', 'waiters')
if l[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local n = tonumber(l[2] or '0') or 0
if n > 10000 then n = 10000 end
while n > 0 do
  local m = math.min(n, 1000)
  local batch = {}
  for i = 1, m do batch[i] = '1' end
  redis.call('RPUSH', KEYS[2], unpack(batch))
  n = n - m
end
redis.call('PEXPIRE', KEYS[2], 10000)
return 1
