-- scheduler_record_tick.lua: Records the last tick of a schedule entry unless a later one is recorded.
--
-- KEYS[1]  the scheduler's last-tick hash
-- ARGV     entry name, tick (Unix seconds)
-- Returns  1 if recorded, 0 if the hash already held a later tick.
local cur = redis.call("HGET", KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then
  return 0
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return 1
