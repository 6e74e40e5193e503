-- fence_tag_capture.lua: Advances a tag's fence and moves the tag set's members into a hold set
-- (merged with what a previous attempt left there).
--
-- KEYS     tag set, hold set, tag fence
-- ARGV     fence_ttl_ms, hold_ttl_ms
-- Returns  the number of members in the hold set.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
if cur >= now then now = cur + 1 end
redis.call('SET', KEYS[3], string.format('%.0f', now), 'PX', ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
  redis.call('DEL', KEYS[1])
end
local n = redis.call('SCARD', KEYS[2])
if n > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return n
