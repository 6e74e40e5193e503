-- session_touch.lua: Sets last_seen and renews the TTL of an existing session; it never
-- recreates a deleted one.
--
-- KEYS[1]  the session hash
-- ARGV     last_seen field, time, TTL in milliseconds
-- Returns  1 if the session exists, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
