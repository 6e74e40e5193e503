-- recover_requeue.lua: Hands back the active jobs of one asynq queue that no live worker runs (worker/recover.go).
--
-- KEYS[1] asynq:{<queue>}:active   (list of task ids)
-- KEYS[2] asynq:{<queue>}:lease    (zset: task id -> lease expiry, unix s)
-- KEYS[3] asynq:{<queue>}:pending  (list)
-- ARGV[1] asynq:{<queue>}:t:       (task hash prefix)
-- ARGV[2] lease age, in seconds, beyond which a lease counts as abandoned
-- ARGV[3] asynq's lease duration in seconds (30)
-- ARGV[4] how many times one job may be handed back by this script; after
--   that it is left to asynq's own recoverer, which counts a retry and
--   archives the job when its retries run out (a job that kills its worker
--   every time must not loop for ever)
--
-- ARGV[5:] ids of the jobs live workers list as running (asynq:workers:*)
--
-- A job is handed back when no live worker lists it and either it has no
-- lease entry (asynq #1051/#1144: such a job is never recovered by asynq)
-- or its lease was last set more than ARGV[2] seconds ago, by the Redis
-- clock (TIME), so worker clocks do not matter. Handing back is what asynq's
-- own requeue at shutdown does: out of active and lease, to the head of
-- pending, state pending; plus a counter field on the task hash. A task
-- hash that is gone leaves only its id behind: the id is dropped.
--
-- Returns {requeued ids, ids handed to asynq's recoverer, dropped ids}.
local t = redis.call("TIME")
local now = tonumber(t[1])
local cutoff = now + tonumber(ARGV[3]) - tonumber(ARGV[2])
local maxFast = tonumber(ARGV[4])
local live = {}
for i = 5, #ARGV do live[ARGV[i]] = true end
local requeued, handed, dropped = {}, {}, {}
local ids = redis.call("LRANGE", KEYS[1], 0, -1)
for _, id in ipairs(ids) do
	if not live[id] then
		local score = redis.call("ZSCORE", KEYS[2], id)
		if (not score) or tonumber(score) < cutoff then
			local key = ARGV[1] .. id
			if redis.call("EXISTS", key) == 0 then
				redis.call("LREM", KEYS[1], 0, id)
				redis.call("ZREM", KEYS[2], id)
				table.insert(dropped, id)
			else
				local n = tonumber(redis.call("HGET", key, "cachekeeper_recoveries") or "0")
				if n < maxFast then
					redis.call("LREM", KEYS[1], 0, id)
					redis.call("ZREM", KEYS[2], id)
					redis.call("RPUSH", KEYS[3], id)
					redis.call("HSET", key, "state", "pending", "pending_since", t[1] .. string.format("%06d", tonumber(t[2])) .. "000",
						"cachekeeper_recoveries", n + 1)
					table.insert(requeued, id)
				elseif not score then
					-- An expired lease makes asynq's recoverer retry or archive it.
					redis.call("ZADD", KEYS[2], 0, id)
					table.insert(handed, id)
				end
			end
		end
	end
end
return {requeued, handed, dropped}
