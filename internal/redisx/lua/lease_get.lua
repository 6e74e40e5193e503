-- lease_get.lua: A reader's read of a cached hash (function ck1_get of cachekeeper_v1; see
-- docs/read-protocol.md): the hash when it is cached, else a lease to fill it, else how
-- long to wait for the holder's fill.
--
-- KEYS[1]  the cached key, KEYS[2] its lease (keys.Lease), KEYS[3] its wake list (keys.LeaseWake)
-- ARGV[1]  token (random, one per reader call), ARGV[2] lease TTL in milliseconds
-- Returns  {1, pttl_ms, {field, value, ...}} hit; {2, stamp_us} lease granted (stamp as a
--          string: the server clock at the grant); {3, wait_ms} another token holds the
--          lease for wait_ms more.
--
-- A grant clears the wake list (elements left from an earlier lease would wake the new
-- waiters for nothing); a wait counts the waiter, so that the fill pushes one element for
-- each.
local h = redis.call('HGETALL', KEYS[1])
if #h > 0 then
  return {1, redis.call('PTTL', KEYS[1]), h}
end
local l = redis.call('HMGET', KEYS[2], 'token', 'stamp')
if l[1] then
  if l[1] == ARGV[1] then return {2, l[2]} end
  redis.call('HINCRBY', KEYS[2], 'waiters', 1)
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 then left = 0 end
  return {3, left}
end
local t = redis.call('TIME')
local stamp = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'token', ARGV[1], 'stamp', stamp, 'waiters', '0')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {2, stamp}
