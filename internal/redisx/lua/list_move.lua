-- list_move.lua: Moves one element from a list to the head of another (or the same) list, optionally
-- as a new value, and trims the destination to its newest entries. The inbox uses it to wrap an entry
-- in its envelope (source = destination = processing list), to dead-letter an entry (processing ->
-- dead-letter list, capped at inbox.dead_max) and to replay a dead letter (dead-letter list -> inbox).
--
-- KEYS     source list, destination list (the same hash slot: the inbox's keys share one)
-- ARGV     element to remove from the source, value to push onto the destination,
--          cap (keep the destination's newest ARGV[3] entries; 0 or less: no cap)
-- Returns  1 if the element was there and moved, 0 otherwise (nothing changed).
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  local cap = tonumber(ARGV[3])
  if cap and cap > 0 then redis.call('LTRIM', KEYS[2], 0, cap - 1) end
  return 1
end
return 0
