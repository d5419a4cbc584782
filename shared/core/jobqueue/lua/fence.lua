-- Piece (dispatch.lua; a worker's start, finish and retry): a job document's state.

-- What a job's document is now, without decoding it (jobs db selected): 'deleted', 'final' (it has
-- a TTL: only final documents do) or nil (submitted or in-progress).
local function doc_state(job_id)
  local left = redis.call('PTTL', job_prefix .. job_id)
  if left == -2 then return 'deleted' end
  if left >= 0 then return 'final' end
  return nil
end
