-- ratelimit_allow.lua: The whole sliding-window decision of ratelimit.Limiter, atomically. Time
-- is the Redis server's (TIME), the same clock ratelimit_prune.lua uses.
--
-- KEYS[1]  the sorted set
-- ARGV[1]  limit, ARGV[2] window in microseconds, ARGV[3] microseconds per
--          score unit, ARGV[4] a random member suffix
-- Returns  {allowed (0/1), remaining, retry-after in microseconds}
if redis.replicate_commands then redis.replicate_commands() end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local unit = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = math.ceil(window / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', (now - window) / unit)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now / unit, t[1] .. '.' .. t[2] .. '-' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, limit - count - 1, 0}
end
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ttl) end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = math.ceil(tonumber(oldest[2]) * unit + window - now)
if retry < 1 then retry = 1 end
return {0, 0, retry}
