-- Piece (dispatch.lua; a worker's heartbeat): the heartbeat. Needs common.lua.

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
