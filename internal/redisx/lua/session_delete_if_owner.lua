-- session_delete_if_owner.lua: Deletes a session only when its user id field is the given user: a token
-- in a user's index never deletes another user's session (session.Store's
-- RevokeAll and the worker's session:revoke).
--
-- KEYS[1]  the session hash
-- ARGV     user id field, user id
-- Returns  1 if deleted, 0 otherwise.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0
