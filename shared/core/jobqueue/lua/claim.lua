-- Piece (dispatch.lua; a worker's claims): the claims. Needs common.lua.

-- Lanes: a job's document names its lane ('plots' or 'default'); each lane is a queue list and a
-- retry set. Claims serve the default lane first and take at most one plots job each, when the
-- default lane leaves room, or first once the plots lane has been passed over PLOTS_EVERY times
-- while it had work: cheap jobs never wait behind a backlog of plots, and plots are never starved.
-- Plots jobs held at once are capped at one less than the live workers (at least one), so with
-- two or more workers one is always free for cheap jobs.
local PLOTS_EVERY = 8

-- Beat, move due retries back, then move up to n ids into the worker's processing list; answer
-- {id1, doc1, reaped1, id2, doc2, reaped2, ...} (doc '' when the document is gone; reaped 1 when the
-- reaper took the id from a dead worker). Ids the worker already holds (``ids``) come first.
-- workers:busy names the first (the worker runs it next), or nothing when there is none.
local function claim(worker, n, ids)
  local processing_key = processing_prefix .. worker
  use(queue_db)
  local t = now()
  redis.call('ZADD', heartbeat_key, t, worker)
  for _, keys_ in pairs(LANES) do
    local lane_queue, lane_delayed = keys_[1], keys_[2]
    for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', lane_delayed, '-inf', t, 'LIMIT', 0, 100)) do
      redis.call('ZREM', lane_delayed, job_id)
      redis.call('RPUSH', lane_queue, job_id)
    end
  end
  -- (LPOP with a count and one RPUSH: two calls a batch instead of an LMOVE a job; the script is
  -- atomic, so no id is ever in neither list)
  local function take(from, count)
    if count <= 0 then return 0 end
    local got = redis.call('LPOP', from, count)
    if not got then return 0 end
    redis.call('RPUSH', processing_key, unpack(got))
    for _, job_id in ipairs(got) do ids[#ids + 1] = job_id end
    return #got
  end
  local function take_plot()
    local job_id = redis.call('LMOVE', plots_queue_key, processing_key, 'LEFT', 'RIGHT')
    if job_id then
      ids[#ids + 1] = job_id
      redis.call('HSET', plots_busy_key, worker, job_id)
    end
  end
  if n > 0 then
    local plots_waiting = redis.call('LLEN', plots_queue_key) > 0 and redis.call('HEXISTS', plots_busy_key, worker) == 0
    if plots_waiting then
      -- the cap, one less than the live workers (at least one), counted only when a plots job waits
      local cap = math.max(1, redis.call('ZCARD', heartbeat_key) - 1)
      plots_waiting = redis.call('HLEN', plots_busy_key) < cap
    end
    if plots_waiting and tonumber(redis.call('GET', skipped_key) or '0') >= PLOTS_EVERY then
      take_plot()
      redis.call('SET', skipped_key, 0)
      take(queue_key, n - 1)
    elseif take(queue_key, n) < n then
      if plots_waiting then
        take_plot()
        redis.call('SET', skipped_key, 0)
      end
    elseif plots_waiting then
      redis.call('INCR', skipped_key)
    end
  end
  if #ids == 0 then
    redis.call('HDEL', busy_key, worker)
    return {}
  end
  redis.call('HSET', busy_key, worker, ids[1])
  local reaped = {}
  if redis.call('EXISTS', reaped_key) == 1 then reaped = redis.call('SMISMEMBER', reaped_key, unpack(ids)) end
  use(jobs_db)
  local job_keys = {}
  for i, job_id in ipairs(ids) do job_keys[i] = job_prefix .. job_id end
  local docs = redis.call('MGET', unpack(job_keys))
  local out = {}
  for i, job_id in ipairs(ids) do
    out[#out + 1] = job_id
    out[#out + 1] = docs[i] or ''
    out[#out + 1] = reaped[i] or 0
  end
  return out
end

function commands.claim()
  local worker, n = arg(), tonumber(arg())
  return claim(worker, n, {})
end

-- An idle worker's claim, pipelined behind its BLMOVE on the same connection, so Redis runs it the
-- moment the BLMOVE returns (one round trip for the wake-up and the claim): everything the worker's
-- processing list holds (the id the BLMOVE moved; after a lost answer, whatever an earlier attempt
-- moved too, so nothing stays held unseen) and new ids up to n in all.
function commands.claim_held()
  local worker, n = arg(), tonumber(arg())
  use(queue_db)
  local held = redis.call('LRANGE', processing_prefix .. worker, 0, -1)
  return claim(worker, n - #held, held)
end
