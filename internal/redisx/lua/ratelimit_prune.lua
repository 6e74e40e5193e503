-- ratelimit_prune.lua: Prunes a batch of sorted sets of one hash slot with the server's own
-- clock. Entries with a score at or below now - window are removed (the
-- FastAPI guide's ZREMRANGEBYSCORE 0 window_start); a set left empty is
-- deleted by Redis itself; a set without TTL gets one window. A set whose TTL
-- is longer than the window belongs to a limiter with a longer window of its
-- own (a login limiter: 5 an hour, TTL one hour): it is left alone, since
-- pruning it to this window would let requests through that its own window
-- still counts; it expires by itself. MEMORY USAGE is taken before and after
-- on every ARGV[4]-th key of the run, starting with the first.
--
-- KEYS     the sorted sets (one hash slot)
-- ARGV[1]  window in microseconds, ARGV[2] microseconds per score unit,
-- ARGV[3]  TTL to restore in milliseconds (the window), ARGV[4] memory sample (0: off),
-- ARGV[5]  offset of this batch in the run (for the sampling phase)
-- Returns  {removed, deleted, ttl fixed, bytes reclaimed, measured, skipped, kept (TTL longer than the window)}
if redis.replicate_commands then redis.replicate_commands() end
local call, pcall = redis.call, redis.pcall
local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cutoff = string.format('%.6f', (now - tonumber(ARGV[1])) / tonumber(ARGV[2]))
local ttlms = ARGV[3]
local every = tonumber(ARGV[4])
local offset = tonumber(ARGV[5])
local removed, deleted, fixed, bytes, measured, skipped, kept = 0, 0, 0, 0, 0, 0, 0
for i = 1, #KEYS do
  local k = KEYS[i]
  local measure = every > 0 and (offset + i - 1) % every == 0
  local before = 0
  local n
  if call('PTTL', k) > tonumber(ttlms) then
    kept = kept + 1
    measure = false
  else
    if measure then before = call('MEMORY', 'USAGE', k) or 0 end
    n = pcall('ZREMRANGEBYSCORE', k, '-inf', cutoff)
  end
  if n == nil then
    -- left alone: its own window is longer
  elseif type(n) == 'table' then
    skipped = skipped + 1
  else
    removed = removed + n
    local ttl = call('PTTL', k)
    if ttl == -2 then
      if n > 0 then deleted = deleted + 1 end
    elseif ttl == -1 then
      call('PEXPIRE', k, ttlms)
      fixed = fixed + 1
    end
    if measure then
      local after = 0
      if ttl ~= -2 then after = call('MEMORY', 'USAGE', k) or 0 end
      bytes = bytes + before - after
      measured = measured + 1
    end
  end
end
return {removed, deleted, fixed, bytes, measured, skipped, kept}
