-- fence_write.lua: Replaces cached hashes whose fence is older than the stamp.
--
-- KEYS     key1 ... keyN, fence1 ... fenceN (the fence of key i is KEYS[N+i]), then optionally
--          the cache's fence (keys.CacheFence: an odd #KEYS); when it is not older than the
--          stamp, every write is refused (skipped)
-- ARGV     stamp_us, max_age_us, then per key: ttl_ms, n, field1, value1, ...
--          fieldn, valuen (n = 0 deletes the key: the row is gone)
-- Returns  {written, deleted, skipped, too_old, skipped_index...}
--
-- The fences are read with one MGET and the keys to replace or delete are
-- removed with one DEL, so a key costs two calls (HSET, PEXPIRE) inside the
-- script: Lua-to-Redis calls are what a fenced write pays over a pipeline.
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
local ok, dels = {}, {}
for i = 1, nk do
  local f = fences[i]
  if f and tonumber(f) >= since then
    out[3] = out[3] + 1
    out[#out + 1] = i
  else
    ok[i] = true
    dels[#dels + 1] = KEYS[i]
  end
end
for i = 1, #dels, 1000 do
  redis.call('DEL', unpack(dels, i, math.min(i + 999, #dels)))
end
local a = 3
for i = 1, nk do
  local n = tonumber(ARGV[a + 1])
  if ok[i] then
    if n == 0 then
      out[2] = out[2] + 1
    else
      redis.call('HSET', KEYS[i], unpack(ARGV, a + 2, a + 1 + 2 * n))
      redis.call('PEXPIRE', KEYS[i], ARGV[a])
      out[1] = out[1] + 1
    end
  end
  a = a + 2 + 2 * n
end
return out
