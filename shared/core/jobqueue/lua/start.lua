-- Piece (dispatch.lua; a worker's start): a claimed job's start. Needs common.lua, fence.lua.

-- Mark a claimed job in-progress: {'gone'} if the id is no longer ours, {'skip'} if its document
-- is final or deleted (the id is acked), {'cached', doc} if the cache holds its result, else {'ok'}.
function commands.start()
  local job_id, worker, doc, cache_key = arg(), arg(), arg(), arg()
  local processing_key = processing_prefix .. worker
  use(queue_db)
  if not redis.call('LPOS', processing_key, job_id) then
    -- not ours: run it or not, it is the same; but a final or deleted document is 'skip' here too,
    -- so that this start sent again after its answer was lost (its first send acked the id) says
    -- what the first said instead of blaming a reaper
    use(jobs_db)
    if doc_state(job_id) then return {'skip'} end
    return {'gone'}
  end
  use(jobs_db)
  if doc_state(job_id) then
    use(queue_db)
    redis.call('LREM', processing_key, 1, job_id)
    redis.call('SREM', reaped_key, job_id)
    if redis.call('HGET', plots_busy_key, worker) == job_id then redis.call('HDEL', plots_busy_key, worker) end
    return {'skip'}
  end
  -- the first write is the one Redis refuses at maxmemory (a script that has written goes on)
  redis.call('SET', job_prefix .. job_id, doc)
  local answer = {'ok'}
  if cache_key ~= '' then
    local source_id = redis.call('GET', cache_key)
    local source = source_id and redis.call('GET', job_prefix .. source_id)
    if source then
      local ok, d = pcall(cjson.decode, source)
      if not ok or type(d) ~= 'table' then d = {} end
      local ref_ok = type(d['result_ref']) ~= 'string' or redis.call('EXISTS', d['result_ref']) == 1
      if d['status'] == 'complete' and ref_ok then answer = {'cached', source} end
    end
  end
  use(queue_db)
  redis.call('SREM', reaped_key, job_id)
  redis.call('HSET', busy_key, worker, job_id)
  return answer
end
