-- warm_pending_add.lua: Adds ids to a cache's pending set (coalesced warms and coalesced
-- invalidations, internal/coalesce), each scored by a sequence number of its
-- own from the cache's counter (raised first above the highest pending
-- score, should the counter have been lost), so that an id asked for again
-- after a worker read the set changes its score, and the worker, which
-- acknowledges only the members whose score is still the one it read, leaves
-- it for the next batch. With a third key (a wake list) it also pushes a
-- token onto that list unless one is already there, so that a worker blocked
-- on the list (BLPOP) drains the set at once; the list never holds more than
-- one token.
--
-- KEYS     pending set, counter[, wake list]
-- ARGV     ids
-- Returns  the number of ids added to the set.
local n = #ARGV
local last = redis.call('INCRBY', KEYS[2], n)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) > last - n then
  last = tonumber(top[2]) + n
  redis.call('SET', KEYS[2], last)
end
local args = {}
for i = 1, n do
  args[2*i-1] = last - n + i
  args[2*i] = ARGV[i]
end
local added = redis.call('ZADD', KEYS[1], unpack(args))
if KEYS[3] and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('LPUSH', KEYS[3], '1')
end
return added
