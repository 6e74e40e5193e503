-- session_delete_if_unchanged.lua: Deletes a session only if its created_at and last_seen still hold the
-- values the cleanup decided on, so a session used in the meantime is never
-- deleted.
--
-- KEYS[1]  the session hash
-- ARGV     created_at field, created_at value, last_seen field ("" when not
--          tracked), last_seen value ("" when absent)
-- Returns  1 if deleted, 0 otherwise.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then
  local seen = redis.call('HGET', KEYS[1], ARGV[3]) or ''
  if seen ~= ARGV[4] then return 0 end
end
return redis.call('DEL', KEYS[1])
