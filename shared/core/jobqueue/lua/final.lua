-- Piece (dispatch.lua; a worker's finish): a final document's writes and its announce.

-- Write a final document (jobs db selected) with the TTL, and move its entry from the active index
-- to its final status's (``submitted_at`` is its score in every index).
local function write_final(job_id, doc, status, submitted_at)
  redis.call('SET', job_prefix .. job_id, doc, 'EX', ttl)
  redis.call('ZREM', active_key, job_id)
  redis.call('ZADD', status_prefix .. status, submitted_at, job_id)
end

-- Announce a final job (id and document) only when a request waits for it: the waiter set its
-- mark in the same round trip as the read that found the job not final (or in the transaction
-- that stored it), and Redis runs that and this script one at a time, so either its read saw this
-- document or this sees its mark. A job nobody waits for costs no subscriber anything.
-- Leaves the jobs db selected.
local function announce(job_id, doc)
  use(jobs_db)
  local mark = waited_prefix .. job_id
  if redis.call('EXISTS', mark, announce_all) > 0 then
    redis.call('DEL', mark)
    redis.call('PUBLISH', done_channel, job_id .. '\n' .. doc)
  end
end
