-- inbox_dead.lua: Moves an element from the inbox's processing list to its dead-letter list.
--
-- KEYS     processing list, dead-letter list
-- ARGV     element, dead-letter record
-- Returns  1 if moved, 0 if the element was not there.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
