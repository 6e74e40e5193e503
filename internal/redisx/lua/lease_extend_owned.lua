-- lease_extend_owned.lua: Extends the asynq leases this worker still holds, and names the ones it lost (worker/leasetap.go).
--
-- KEYS[1]  asynq:{<queue>}:lease  (zset: task id -> lease expiry, unix s)
-- ARGV[1]  the new lease expiry (unix s), or "" to check only
-- ARGV[3k-1], ARGV[3k], ARGV[3k+1]  a task id, the lease expiry this worker
--          last set for it ("" when unknown: extended if present, as
--          asynq's own ZADD XX would), and the expiry of a later write whose
--          reply was lost ("" when none)
--
-- A lease is this worker's while its score is still one this worker wrote:
-- another worker that took the job over (after the recoverer handed it
-- back) wrote its own, and a job handed back has none. Only leases still
-- held are extended, so a worker back from a pause or a network stall never
-- extends the lease of the copy another worker now runs.
--
-- Returns  the ids whose lease is no longer this worker's.
local lost = {}
for i = 2, #ARGV - 2, 3 do
	local id, want, alt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
	local score = redis.call("ZSCORE", KEYS[1], id)
	local mine = score and (want == "" or tonumber(score) == tonumber(want) or (alt ~= "" and tonumber(score) == tonumber(alt)))
	if not mine then
		table.insert(lost, id)
	elseif ARGV[1] ~= "" then
		redis.call("ZADD", KEYS[1], "XX", ARGV[1], id)
	end
end
return lost
