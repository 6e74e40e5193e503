-- warm_drain_ack.lua: Removes the ids of an enqueued coalesced batch whose score is still the one
-- read. With ARGV[2] = "1" it also releases the lease if owner ARGV[1] still
-- holds it.
--
-- KEYS     pending set, lease
-- ARGV     owner, release ("1" or "0"), id, score, id, score...
-- Returns  how many ids it removed.
local removed = 0
for i = 3, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i+1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
if ARGV[2] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return removed
