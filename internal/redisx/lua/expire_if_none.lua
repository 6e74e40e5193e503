-- expire_if_none.lua: Gives a key a TTL only if it has none (session cleanup).
--
-- KEYS[1]  the key
-- ARGV[1]  TTL in milliseconds
-- Returns  1 if the TTL was set, 0 if the key had one or is gone.
if redis.call('PTTL', KEYS[1]) == -1 then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
