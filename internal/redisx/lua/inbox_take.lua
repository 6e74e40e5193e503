-- inbox_take.lua: Moves up to #ARGV-1 entries from the inbox's tail to the processing list's head,
-- each wrapped in its envelope (the JSON of the bridge's envelope: id, moved_at, entry).
--
-- KEYS     inbox list, processing list
-- ARGV     moved_at (RFC 3339), then one fresh envelope id per entry to take
-- Returns  the envelopes pushed, oldest entry first (fewer when the inbox ran dry).
local out = {}
for i = 2, #ARGV do
  local e = redis.call('RPOP', KEYS[1])
  if not e then break end
  local env = cjson.encode({cachekeeper_inbox_id = ARGV[i], moved_at = ARGV[1], entry = e})
  redis.call('LPUSH', KEYS[2], env)
  out[#out + 1] = env
end
return out
