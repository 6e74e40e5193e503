-- tag_add.lua: Adds members to a tag set and makes its TTL at least ARGV[1] milliseconds
-- (never shorter than it was). The warm sends it with EVAL inside its
-- pipeline, not EVALSHA, so it needs no loading.
--
-- KEYS[1]  tag set
-- ARGV     ttl_ms, member...
-- Returns  1
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
local cur = redis.call('PTTL', KEYS[1])
if cur == -1 or cur < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
