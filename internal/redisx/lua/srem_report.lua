-- srem_report.lua: Removes members from a set and says whether the set is left (session
-- cleanup's index pruning).
--
-- KEYS[1]  the set
-- ARGV     members
-- Returns  {removed, 1 if the set still exists else 0}
local n = redis.call('SREM', KEYS[1], unpack(ARGV))
return {n, redis.call('EXISTS', KEYS[1])}
