-- fence_restore.lua: fence_write.lua with each hash sent as a DUMP payload: a replaced key
-- costs one call (RESTORE key ttl payload REPLACE), which sets the whole hash
-- and its TTL atomically.
--
-- KEYS     key1 ... keyN, fence1 ... fenceN (the fence of key i is KEYS[N+i]), then optionally
--          the cache's fence (keys.CacheFence: an odd #KEYS); when it is not older than the
--          stamp, every write is refused (skipped)
-- ARGV     stamp_us, max_age_us, then per key: ttl_ms, payload ("" deletes)
-- Returns  what fence_write.lua returns, or {-1, error} when the server
--          refused a payload (the caller then falls back to fence_write.lua).
local since = tonumber(ARGV[1])
local maxage = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nk = math.floor(#KEYS / 2)
local out = {0, 0, 0, 0}
if now - since > maxage then
  out[3], out[4] = nk, 1
  for i = 1, nk do out[#out + 1] = i end
  return out
end
if #KEYS > 2 * nk then
  local cf = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
  if cf >= since then
    out[3] = nk
    for i = 1, nk do out[#out + 1] = i end
    return out
  end
end
local fences = redis.call('MGET', unpack(KEYS, nk + 1, 2 * nk))
local dels = {}
for i = 1, nk do
  local f = fences[i]
  if f and tonumber(f) >= since then
    out[3] = out[3] + 1
    out[#out + 1] = i
  else
    local payload = ARGV[2 * i + 2]
    if payload == '' then
      dels[#dels + 1] = KEYS[i]
      out[2] = out[2] + 1
    else
      local r = redis.pcall('RESTORE', KEYS[i], ARGV[2 * i + 1], payload, 'REPLACE')
      if type(r) == 'table' and r['err'] then return {-1, r['err']} end
      out[1] = out[1] + 1
    end
  end
end
for i = 1, #dels, 1000 do
  redis.call('DEL', unpack(dels, i, math.min(i + 999, #dels)))
end
return out
