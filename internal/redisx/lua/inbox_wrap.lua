-- inbox_wrap.lua: Replaces a raw entry in the inbox's processing list by its envelope.
--
-- KEYS[1]  processing list
-- ARGV     raw entry, envelope
-- Returns  1 if the raw entry was there, 0 otherwise.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[2])
  return 1
end
return 0
