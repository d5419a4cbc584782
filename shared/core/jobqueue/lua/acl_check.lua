-- Whether Redis's ACL lets the calling user run each of a list of commands, as called (the keys
-- and channels they name are checked too), without running any: jobqueue/aclcheck.py sends every
-- command the worker's scripts call, at the worker's start and on each heartbeat, off the hot path.
-- A script refused a command part-way is not undone (Redis has no rollback), so a worker claims
-- nothing and sends no outcome while this finds a refusal, instead of a claim or a finish that
-- moves a job half-way.
--
-- ARGV: per command its argument count, then the command and its arguments (no KEYS: it reads and
-- writes nothing). Answers the 1-based positions of the commands refused (empty: all allowed), or
-- {-1} on a Redis without redis.acl_check_cmd (before 7.0): nothing can be checked there.
if not redis.acl_check_cmd then return {-1} end
local refused = {}
local i, n = 1, 0
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  n = n + 1
  -- an error (a command this Redis does not know) is a refusal too: the script calling it would fail
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(ARGV, i + 1, i + count))
  if not (ok and allowed) then refused[#refused + 1] = n end
  i = i + count + 1
end
return refused
