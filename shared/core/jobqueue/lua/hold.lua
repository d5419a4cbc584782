-- Jobs one client submits against what it may hold (jobqueue_api.holdings, MAX_JOBS_PER_CLIENT).
-- KEYS[1] is the client's sorted set of held job ids scored with their submitted time
-- (keys.held); ARGV the cap, the job document prefix, how many of the oldest entries to look at
-- when the cap is reached, the submitted time, the time before which an entry's job is surely
-- stored if it ever will be, then the new jobs' ids. Atomic, so API processes and pods together
-- never let a client hold more than the cap. At the cap, the oldest entries older than that time
-- whose document is gone (expired, deleted, or never stored) stop counting; a newer entry without
-- a document may be a job another API process is storing now, so it still counts. Returns {admitted, held after,
-- ms until the soonest-expiring of the looked-at documents expires, -1 when none of them has a
-- TTL yet}: the first `admitted` ids are now held, the rest are refused. Writes only after its
-- reads (ZREM of entries already gone, then ZADD), so a refusal part-way leaves nothing half done.
local key, cap, prefix = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local look, score, settled = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local n = #ARGV - 5
local held = redis.call('ZCARD', key)
local wait = -1
if held + n > cap then
  local gone = {}
  local oldest = redis.call('ZRANGE', key, 0, look - 1, 'WITHSCORES')
  for i = 1, #oldest, 2 do
    local id = oldest[i]
    local ttl = redis.call('PTTL', prefix .. id)
    if ttl == -2 then
      if tonumber(oldest[i + 1]) < settled then
        gone[#gone + 1] = id
      end
    elseif ttl >= 0 and (wait < 0 or ttl < wait) then
      wait = ttl
    end
  end
  if #gone > 0 then
    held = held - redis.call('ZREM', key, unpack(gone))
  end
end
local room = math.max(0, math.min(n, cap - held))
if room > 0 then
  local pairs_ = {}
  for i = 1, room do
    pairs_[#pairs_ + 1] = score
    pairs_[#pairs_ + 1] = ARGV[5 + i]
  end
  redis.call('ZADD', key, unpack(pairs_))
end
return {room, held + room, wait}
