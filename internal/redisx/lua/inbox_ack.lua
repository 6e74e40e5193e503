-- inbox_ack.lua: Removes handled elements (batch envelopes) from the inbox's processing list, one
-- occurrence each, searching from the tail (the oldest end, where the first-taken ones sit), so that
-- removing several costs one round trip and each removal stops near the tail.
--
-- KEYS     processing list
-- ARGV     the elements to remove (each unique: it holds its own id)
-- Returns  how many of them were found and removed (one taken by another bridge's recovery is not).
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('LREM', KEYS[1], -1, ARGV[i])
end
return n
