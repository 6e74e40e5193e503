-- inbox_take.lua: Moves up to ARGV[3] entries from the inbox's tail to the processing list's head as
-- ONE element, the batch envelope: {"cachekeeper_inbox_batch": id, "moved_at": time, "entries":
-- [the raw entries as JSON strings, oldest first]}. One RPOP with a count, one JSON encoding of the
-- array and one LPUSH per batch (nothing per entry) keep a batch cheap for Redis; the bridge removes
-- the envelope once every entry of it is enqueued. Needs Redis >= 6.2 (RPOP count).
--
-- KEYS     inbox list, processing list
-- ARGV     moved_at (RFC 3339), the batch id (hex: no escaping needed), the most entries to take
-- Returns  {} when the inbox is empty, else {batch envelope, entry 1, entry 2, ...}, oldest first.
local taken = redis.call('RPOP', KEYS[1], tonumber(ARGV[3]))
if not taken then return {} end
local env = '{"cachekeeper_inbox_batch":"' .. ARGV[2] .. '","moved_at":"' .. ARGV[1] .. '","entries":' ..
  cjson.encode(taken) .. '}'
redis.call('LPUSH', KEYS[2], env)
table.insert(taken, 1, env)
return taken
