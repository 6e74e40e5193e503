-- inbox_take.lua: Moves up to #ARGV-1 entries from the inbox's tail to the processing list's head,
-- each wrapped in its envelope: the JSON object {"cachekeeper_inbox_id": id, "moved_at": time,
-- "entry": the raw entry as a JSON string}. One RPOP with a count and one LPUSH per 1,000 entries
-- (not two commands per entry) keep a batch cheap for Redis. Needs Redis >= 6.2 (RPOP count).
--
-- KEYS     inbox list, processing list
-- ARGV     moved_at (RFC 3339), then one fresh envelope id per entry to take (hex: no escaping)
-- Returns  a flat array, oldest entry first: envelope 1, raw entry 1, envelope 2, raw entry 2, ...
--          (the k-th pair used ARGV[k+1] as its id; fewer pairs when the inbox ran dry). The raw
--          entry is returned beside its envelope so that the bridge need not decode the envelope.
local taken = redis.call('RPOP', KEYS[1], #ARGV - 1)
if not taken then return {} end
local out, envs = {}, {}
local head = '","moved_at":"' .. ARGV[1] .. '","entry":'
for k, e in ipairs(taken) do
  local env = '{"cachekeeper_inbox_id":"' .. ARGV[k + 1] .. head .. cjson.encode(e) .. '}'
  envs[#envs + 1] = env
  out[#out + 1] = env
  out[#out + 1] = e
  if #envs == 1000 then
    redis.call('LPUSH', KEYS[2], unpack(envs))
    envs = {}
  end
end
if #envs > 0 then redis.call('LPUSH', KEYS[2], unpack(envs)) end
return out
