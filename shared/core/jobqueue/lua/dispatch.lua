-- Every Redis operation of a job's life after its submit, as one script with one command per
-- operation. (Submit only writes, deciding nothing: it is a MULTI/EXEC transaction in
-- jobqueue/delivery.py, which costs Redis half of what a script call does. Only when that
-- transaction's answer was lost does a submit come here: ``store`` writes it unless it applied.
-- A submit sent with an Idempotency-Key, which decides, has a script of its own, store_keyed.lua,
-- that sets up only what it uses.)
--
-- A line '--@include <piece>.lua' is replaced by that file of this directory when the script is
-- loaded (jobqueue/delivery.py): a piece shared by two scripts (new jobs' writes, the lanes, the
-- db selection) is defined once.
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

local queue_key, delayed_key, heartbeat_key, busy_key, index_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local plots_queue_key, plots_delayed_key, skipped_key, plots_busy_key = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local active_key, reaped_key = KEYS[10], KEYS[11]
local jobs_db, queue_db = ARGV[1], ARGV[2]
local job_prefix, result_prefix, processing_prefix = ARGV[3], ARGV[4], ARGV[5]
local done_channel, ttl = ARGV[6], tonumber(ARGV[7])
local status_prefix, operation_prefix = ARGV[8], ARGV[9]
local waited_prefix, announce_all = ARGV[10], ARGV[11]
local command = ARGV[12]

-- Lanes: a job's document names its lane ('plots' or 'default'); each lane is a queue list and a
-- retry set. Claims serve the default lane first and take at most one plots job each, when the
-- default lane leaves room, or first once the plots lane has been passed over PLOTS_EVERY times
-- while it had work: cheap jobs never wait behind a backlog of plots, and plots are never starved.
-- Plots jobs held at once are capped at one less than the live workers (at least one), so with
-- two or more workers one is always free for cheap jobs.
local PLOTS_EVERY = 8
--@include lanes.lua
--@include select.lua

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

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

-- What a job's document is now, without decoding it (jobs db selected): 'deleted', 'final' (it has
-- a TTL: only final documents do) or nil (submitted or in-progress).
local function doc_state(job_id)
  local left = redis.call('PTTL', job_prefix .. job_id)
  if left == -2 then return 'deleted' end
  if left >= 0 then return 'final' end
  return nil
end

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

-- arguments of the commands, read in order
local position = 12
local function arg()
  position = position + 1
  return ARGV[position]
end
local function rest()
  local out = {}
  while position < #ARGV do out[#out + 1] = arg() end
  return out
end

local commands = {}

-- Set by a command that changed something a second run of it could not report again (ids moved
-- back to the queue): the dispatcher then keeps the call's answer when the call asks it to.
local worth_keeping = false

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

-- The fence shared by finish and retry: release the id and say whether we may still write.
-- Answers nil when we may, else 'lost' (not ours any more), 'deleted' or 'final', or 'done' when
-- the document is already exactly ``doc``: this same call, sent again after its answer was lost
-- (redis-py's retry, or the worker's own), whose first send did all the work (the document holds
-- this worker's id and times, so nobody else writes the same). Leaves the jobs db selected. Only a
-- plots-lane job can be the one workers:busy-plots names.
local function release(job_id, worker, lane, doc)
  use(queue_db)
  if lane == 'plots' and redis.call('HGET', plots_busy_key, worker) == job_id then
    redis.call('HDEL', plots_busy_key, worker)
  end
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

-- A worker's heartbeat (its lease) at Redis's time now. In a script, not TIME and then ZADD from
-- the worker: a beat sent again after its answer was lost then writes the time it arrives, never
-- the time the worker had read before the first send, which may be older than the beat a claim
-- wrote meanwhile (a lease moved back, and a live worker reaped).
function commands.beat()
  local worker = arg()
  use(queue_db)
  redis.call('ZADD', heartbeat_key, now(), worker)
  return 1
end

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

-- The dispatcher. A call may begin with 'keep' and a key (its own, new each call): a give back, a
-- reap or a sweep sent again after its answer was lost (redis-py's retry) finds nothing left to do
-- and would answer 0, a retry finds the job taken by another worker and would answer 'lost'; with
-- 'keep' the first send's answer, when it moved anything, is kept under that key for KEEP_SECONDS
-- and answered again instead of running the call a second time.
local KEEP_SECONDS = 300
local answers = {}
local kept_key = nil
for name in string.gmatch(command, '[^+]+') do
  if name == 'keep' then
    kept_key = arg()
    use(queue_db)
    local kept = redis.call('GET', kept_key)
    if kept then return cjson.decode(kept) end
  else
    local run = commands[name]
    if not run then return redis.error_reply('jobqueue: unknown command ' .. name) end
    answers[#answers + 1] = run()
  end
end
local answer = answers
if #answers == 1 then answer = answers[1] end
if kept_key and worth_keeping then
  use(queue_db)
  redis.call('SET', kept_key, cjson.encode(answer), 'EX', KEEP_SECONDS)
end
return answer
