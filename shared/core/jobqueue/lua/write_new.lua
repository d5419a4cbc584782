-- Piece (included by dispatch.lua for its ``store`` and by store_keyed.lua): the one definition of
-- a new job's writes, the same as the submit transaction's (jobqueue/delivery.py, Delivery.store).
-- Needs the locals jobs_db, queue_db, job_prefix, operation_prefix, index_key, active_key and the
-- pieces select.lua (use) and lanes.lua (lane_keys).
--
-- Write, index and queue new jobs (fields: per job its id, document, submit time, operation, lane
-- and its owner's index key, '' for none). Leaves the queue db selected.
local NEW_JOB_FIELDS = 6
local function write_new(fields)
  local docs, scored, by_operation, by_lane, by_owner = {}, {}, {}, {}, {}
  for i = 1, #fields, NEW_JOB_FIELDS do
    local job_id, doc, submitted_at, operation, lane = fields[i], fields[i + 1], fields[i + 2], fields[i + 3], fields[i + 4]
    local owner_key = fields[i + 5]
    if owner_key ~= '' then
      local owned = by_owner[owner_key] or {}
      owned[#owned + 1] = submitted_at
      owned[#owned + 1] = job_id
      by_owner[owner_key] = owned
    end
    docs[#docs + 1] = job_prefix .. job_id
    docs[#docs + 1] = doc
    scored[#scored + 1] = submitted_at
    scored[#scored + 1] = job_id
    local pairs_ = by_operation[operation] or {}
    pairs_[#pairs_ + 1] = submitted_at
    pairs_[#pairs_ + 1] = job_id
    by_operation[operation] = pairs_
    local lane_queue = (lane_keys(lane))
    local queued = by_lane[lane_queue] or {}
    queued[#queued + 1] = job_id
    by_lane[lane_queue] = queued
  end
  use(jobs_db)
  redis.call('MSET', unpack(docs))
  redis.call('ZADD', index_key, unpack(scored))
  for operation, pairs_ in pairs(by_operation) do
    redis.call('ZADD', operation_prefix .. operation, unpack(pairs_))
  end
  for owner_key, owned in pairs(by_owner) do redis.call('ZADD', owner_key, unpack(owned)) end
  redis.call('ZADD', active_key, unpack(scored))
  use(queue_db)
  for lane_queue, queued in pairs(by_lane) do redis.call('RPUSH', lane_queue, unpack(queued)) end
end
