-- warm_drain_release.lua: Deletes the coalescing lease if the given owner holds it.
--
-- KEYS[1]  lease
-- ARGV[1]  owner
-- Returns  1 if deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
