-- Every Redis operation of a job's life after its submit, as one script with one command per
-- operation. (Submit only writes, deciding nothing: it is a MULTI/EXEC transaction in
-- jobqueue/delivery.py, which costs Redis half of what a script call does. Only when that
-- transaction's answer was lost does a submit come here: ``store`` writes it unless it applied.
-- A submit sent with an Idempotency-Key, which decides, has a script of its own, store_keyed.lua,
-- that sets up only what it uses. So do a worker's hot calls, claim, start, finish or retry and
-- heartbeat: the same commands with this layout, in scripts that jobqueue/delivery.py composes
-- of common.lua, the pieces those commands need and run.lua, without the other commands.)
--
-- A line '--@include <piece>.lua' is replaced by that file of this directory when the script is
-- loaded (jobqueue/delivery.py): a piece shared by two scripts (the worker's commands and what
-- they use, new jobs' writes, the lanes, the db selection) is defined once.
--
-- Key layout (every name comes from jobqueue/keys.py; this file spells none):
--   queue db  KEYS[1] queue        hotqueue:<queue>      list: queued job ids (HotQueue's list): the
--                                                        default lane, for cheap jobs
--             KEYS[2] delayed      delayed:<queue>       zset: retries waiting out their backoff
--             KEYS[6] plots queue  hotqueue:<queue>-plots  list: the lane of expensive jobs (plots)
--             KEYS[7] plots delayed delayed:<queue>-plots zset: its retries
--             KEYS[8] skipped      workers:plots-skipped  string: claims that passed the plots lane over
--             KEYS[9] plots busy   workers:busy-plots     hash: worker -> the plots job it holds
--             KEYS[3] heartbeat    workers:heartbeat     zset: worker -> last beat (Redis TIME)
--             KEYS[4] busy         workers:busy          hash: worker -> job id it runs now
--             KEYS[11] reaped      workers:reaped        set: ids the reaper took from dead workers; a
--                                                        worker starts them (in-progress, attempt
--                                                        counted) before running them, whatever they take
--             processing_prefix .. worker                list: ids a worker claimed, not finished
--             a kept answer (built by the caller)        string, short TTL: what a give back, reap,
--                                                        sweep or retry did, answered again to the same
--                                                        call sent again (see the dispatcher at the end)
--   jobs db   KEYS[5] index        jobs:by-submitted     zset: job id -> submit time
--             KEYS[10] active      jobs:active           zset: the same, jobs not final yet (submitted
--                                                        or in-progress: few, whatever the history)
--             status_prefix .. status                    zset: the same, per final status (written once)
--             operation_prefix .. operation              zset: the same, per operation
--             an owner index (built by the caller)       zset: the same, per named token's user
--             job_prefix .. id                           string: the job document (JSON); it has a
--                                                        TTL exactly when it is final, so the fences
--                                                        read PTTL instead of decoding it
--             result_prefix .. id                        string: a stored PNG or large JSON result
--             (a result shared by identical requests is under a key the caller builds from the
--             request's fingerprint; cache hits reference it)
--             a cache key (built by the caller)          string: id of the job holding a result
--             an idempotency key (store_keyed.lua)       string, TTL: '<job id> <fingerprint>' of a
--                                                        submit sent with an Idempotency-Key
--             done_channel                               pub/sub: 'id\nfinal document' when a job becomes final
--                                                        and someone waits for it (below)
--             waited_prefix .. id                        string, TTL: a request waits for this job
--             announce_all                               string, optional: announce every final job
--
-- ARGV[1..11] are the context (below); ARGV[12] names the command; its arguments follow. Commands
-- joined by '+' (e.g. 'finish+start') run one after the other in this one script, each reading
-- its own arguments in turn, so "record job i, start job i+1" costs one round trip. Scripts
-- SELECT the db they need; the selection ends with the script (the caller's connection keeps its
-- own). Times come from Redis's TIME, so hosts with skewed clocks cannot reap each other early.

--@include common.lua
--@include fence.lua
--@include final.lua

-- an unreadable document has no status (the worker then records it as failed) instead of an error
local function status_of(doc)
  local ok, d = pcall(cjson.decode, doc)
  if ok and type(d) == 'table' then return d['status'] end
  return nil
end

-- The lane of each id, from its document (queue db selected before and after).
local function lanes_of(ids)
  local out = {}
  if #ids == 0 then return out end
  local job_keys = {}
  for i, job_id in ipairs(ids) do job_keys[i] = job_prefix .. job_id end
  use(jobs_db)
  local docs = redis.call('MGET', unpack(job_keys))
  use(queue_db)
  for i = 1, #ids do
    local lane = 'default'
    if docs[i] then
      local ok, d = pcall(cjson.decode, docs[i])
      if ok and type(d) == 'table' and d['lane'] == 'plots' then lane = 'plots' end
    end
    out[i] = lane
  end
  return out
end

-- Put ids back at the front of their lanes, keeping their order (queue db selected).
local function push_front(ids)
  local lanes = lanes_of(ids)
  for i = #ids, 1, -1 do redis.call('LPUSH', (lane_keys(lanes[i])), ids[i]) end
end

local function rest()
  local out = {}
  while position < #ARGV do out[#out + 1] = arg() end
  return out
end

-- Take a queued id out of the queue (or the retry set) and, only if it was there, write the
-- cancelled document and announce it, so neither a worker nor the sweeper acts on it in between.
-- 1 also when it is cancelled already: a cancel sent again after its answer was lost (redis-py's
-- retry) finds its own work done, and must not answer that a worker has the job.
function commands.cancel()
  local job_id, doc, submitted_at = arg(), arg(), arg()
  use(queue_db)
  local removed = 0
  for _, keys_ in pairs(LANES) do
    removed = removed + redis.call('LREM', keys_[1], 1, job_id) + redis.call('ZREM', keys_[2], job_id)
  end
  if removed == 0 then
    use(jobs_db)
    local current = redis.call('GET', job_prefix .. job_id)
    if current and status_of(current) == 'cancelled' then return 1 end
    return 0
  end
  redis.call('SREM', reaped_key, job_id)
  use(jobs_db)
  write_final(job_id, doc, 'cancelled', submitted_at)
  announce(job_id, doc)
  return 1
end

--@include claim.lua

--@include start.lua

--@include record.lua

-- Requeue, at the front of their lanes, the ids of workers silent for longer than the lease;
-- {moved, workers}.
function commands.reap()
  local lease = tonumber(arg())
  use(queue_db)
  local dead = redis.call('ZRANGEBYSCORE', heartbeat_key, '-inf', now() - lease)
  local moved = 0
  for _, worker in ipairs(dead) do
    local processing_key = processing_prefix .. worker
    local ids = redis.call('LRANGE', processing_key, 0, -1)
    redis.call('DEL', processing_key)
    push_front(ids)
    if #ids > 0 then redis.call('SADD', reaped_key, unpack(ids)) end
    moved = moved + #ids
    redis.call('HDEL', plots_busy_key, worker)
    redis.call('ZREM', heartbeat_key, worker)
    redis.call('HDEL', busy_key, worker)
  end
  if #dead > 0 then worth_keeping = true end
  return {moved, #dead}
end

--@include beat.lua

-- Return claimed ids to the front of their lanes, keeping their order; how many.
function commands.give_back()
  local worker = arg()
  local ids = rest()
  local processing_key = processing_prefix .. worker
  use(queue_db)
  local held = {}
  local plot = redis.call('HGET', plots_busy_key, worker)
  for _, job_id in ipairs(ids) do
    if redis.call('LREM', processing_key, 1, job_id) == 1 then held[#held + 1] = job_id end
    if job_id == plot then redis.call('HDEL', plots_busy_key, worker) end
  end
  push_front(held)
  if #held > 0 then worth_keeping = true end
  return #held
end

-- Claimed ids whose documents this worker's jobs db lacks, while no API has recorded its jobs db
-- (jobqueue/jobsdb.py): each one this db never indexed either (the API may keep its jobs in another
-- REDIS_JOBS_DB) is put back at the front of the lane it came from, if still ours and still without
-- a document; one the indexes know (deleted or expired here) stays, for the start to ack. Answers
-- the ids put back.
function commands.return_unfound()
  local worker = arg()
  local ids = rest()
  local unknown = {}
  use(jobs_db)
  for _, job_id in ipairs(ids) do
    if redis.call('EXISTS', job_prefix .. job_id) == 0 and not redis.call('ZSCORE', index_key, job_id)
        and not redis.call('ZSCORE', active_key, job_id) then
      unknown[#unknown + 1] = job_id
    end
  end
  use(queue_db)
  local processing_key = processing_prefix .. worker
  local plot = redis.call('HGET', plots_busy_key, worker)
  local back = {}
  for _, job_id in ipairs(unknown) do
    if redis.call('LREM', processing_key, 1, job_id) == 1 then back[#back + 1] = job_id end
  end
  -- no document to name its lane: a plots id is the one workers:busy-plots names for this worker
  for i = #back, 1, -1 do
    local lane = 'default'
    if back[i] == plot then
      lane = 'plots'
      redis.call('HDEL', plots_busy_key, worker)
    end
    redis.call('LPUSH', (lane_keys(lane)), back[i])
    if redis.call('HGET', busy_key, worker) == back[i] then redis.call('HDEL', busy_key, worker) end
  end
  if #back > 0 then worth_keeping = true end
  return back
end

-- Queue a job still 'submitted' that is in no list (its producer died between the two writes);
-- 1 if queued.
function commands.sweep_one()
  local job_id = arg()
  use(queue_db)
  for _, keys_ in pairs(LANES) do
    if redis.call('LPOS', keys_[1], job_id) then return 0 end
    if redis.call('ZSCORE', keys_[2], job_id) then return 0 end
  end
  for _, worker in ipairs(redis.call('ZRANGE', heartbeat_key, 0, -1)) do
    if redis.call('LPOS', processing_prefix .. worker, job_id) then return 0 end
  end
  use(jobs_db)
  local current = redis.call('GET', job_prefix .. job_id)
  if not current or status_of(current) ~= 'submitted' then return 0 end
  local lane = lanes_of({job_id})[1]
  redis.call('RPUSH', (lane_keys(lane)), job_id)
  worth_keeping = true
  return 1
end

-- What is waiting, per lane: {default depth, plots depth, retries waiting, oldest head's id or ''}
-- (the older of the two lanes' heads, by submit time).
function commands.waiting()
  use(queue_db)
  local depth = redis.call('LLEN', queue_key)
  local plots_depth = redis.call('LLEN', plots_queue_key)
  local delayed = redis.call('ZCARD', delayed_key) + redis.call('ZCARD', plots_delayed_key)
  local heads = {}
  for _, key in ipairs({queue_key, plots_queue_key}) do
    local head = redis.call('LINDEX', key, 0)
    if head then heads[#heads + 1] = head end
  end
  local oldest = ''
  if #heads > 0 then
    use(jobs_db)
    local best
    for _, head in ipairs(heads) do
      local score = tonumber(redis.call('ZSCORE', index_key, head) or '')
      if score and (best == nil or score < best) then best, oldest = score, head end
    end
    if oldest == '' then oldest = heads[1] end
  end
  return {depth, plots_depth, delayed, oldest}
end

--@include write_new.lua

-- Store, index and queue a batch of new jobs, unless it is stored already: the submit
-- transaction's retry after its answer was lost (the connection dropped, a socket timeout). That
-- transaction is atomic, so it applied if any of its documents exists; then nothing is written
-- again (no id queued twice, no document sent back to 'submitted'). Arguments: per job its id,
-- document, submit time, operation, lane and owner index key. 1 if stored now, 0 if it was already.
function commands.store()
  local fields = rest()
  if #fields == 0 then return 0 end
  local job_keys = {}
  for i = 1, #fields, NEW_JOB_FIELDS do job_keys[#job_keys + 1] = job_prefix .. fields[i] end
  use(jobs_db)
  if redis.call('EXISTS', unpack(job_keys)) > 0 then return 0 end
  write_new(fields)
  return 1
end

--@include run.lua
