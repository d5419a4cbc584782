-- Piece (dispatch.lua; a worker's finish and retry): a job's outcome written, fenced. Needs
-- common.lua, fence.lua, final.lua.

-- The fence shared by finish and retry: release the id and say whether we may still write.
-- Answers nil when we may, else 'lost' (not ours any more), 'deleted' or 'final', or 'done' when
-- the document is already exactly ``doc``: this same call, sent again after its answer was lost
-- (redis-py's retry, or the worker's own), whose first send did all the work (the document holds
-- this worker's id and times, so nobody else writes the same). Leaves the jobs db selected. Only a
-- plots-lane job can be the one workers:busy-plots names. workers:busy stops naming the job here,
-- not at the worker's next claim (up to a second later when idle, while /queue and the web page
-- showed the worker still running a job already complete).
local function release(job_id, worker, lane, doc)
  use(queue_db)
  if lane == 'plots' and redis.call('HGET', plots_busy_key, worker) == job_id then
    redis.call('HDEL', plots_busy_key, worker)
  end
  if redis.call('HGET', busy_key, worker) == job_id then redis.call('HDEL', busy_key, worker) end
  if redis.call('LREM', processing_prefix .. worker, 1, job_id) == 0 then
    use(jobs_db)
    if redis.call('GET', job_prefix .. job_id) == doc then return 'done' end
    return 'lost'
  end
  use(jobs_db)
  return doc_state(job_id)
end

-- Write the final document (with the TTL), its stored result (a blob stored under result_key; or,
-- for a cache hit, result_key is the stored result it shares, whose TTL is extended), the cache
-- entry (the request's fingerprint -> this job), and announce the id with the document (a long poll answers from the message
-- without reading the job again); only while the id is still ours and not final.
function commands.finish()
  local job_id, worker, doc, blob, result_key, cache_key = arg(), arg(), arg(), arg(), arg(), arg()
  local status, submitted_at, lane = arg(), arg(), arg()
  local refused = release(job_id, worker, lane, doc)
  if refused == 'done' then return 'ok' end
  if refused then return refused end
  if blob ~= '' then
    redis.call('SET', result_key, blob, 'EX', ttl)
  elseif result_key ~= '' then
    redis.call('EXPIRE', result_key, ttl)
  end
  write_final(job_id, doc, status, submitted_at)
  if cache_key ~= '' then redis.call('SET', cache_key, job_id, 'EX', ttl) end
  announce(job_id, doc)
  return 'ok'
end

-- Write the document back as submitted and queue the id again: at the front now (delay <= 0) or
-- in the retry set until its backoff is over.
function commands.retry()
  local job_id, worker, doc, delay, lane = arg(), arg(), arg(), tonumber(arg()), arg()
  local refused = release(job_id, worker, lane, doc)
  if refused == 'done' then return 'ok' end
  if refused then return refused end
  redis.call('SET', job_prefix .. job_id, doc)
  use(queue_db)
  local lane_queue, lane_delayed = lane_keys(lane)
  if delay <= 0 then
    redis.call('LPUSH', lane_queue, job_id)
  else
    redis.call('ZADD', lane_delayed, now() + delay, job_id)
  end
  -- sent again, another worker may have started the job meanwhile: 'lost', unless the call kept this
  worth_keeping = true
  return 'ok'
end
