-- hot_touch.lua: Records a sampled read of an id for refresh-ahead (function ck1_touch of
-- cachekeeper_v1; see docs/read-protocol.md).
--
-- KEYS[1]  the cache's hot set (keys.Hot)
-- ARGV[1]  id, ARGV[2] the most ids the set keeps (the oldest reads go first)
-- Returns  1
--
-- The score is the server clock in milliseconds; the set expires an hour after the last
-- read recorded, so a cache nobody reads leaves nothing behind.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
local max = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) > max then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
