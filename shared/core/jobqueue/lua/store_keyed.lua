-- A submit sent with an Idempotency-Key (jobqueue/delivery.py, Delivery.store_keyed), as a script
-- of its own: the dispatcher (dispatch.lua) defines some thirty functions and converts 22 keys and
-- context arguments on every call before it runs one, which cost Redis more than this submit's
-- writes. This script sets up only what it uses; the writes of a new job are the same piece
-- (write_new.lua) the dispatcher's ``store`` runs.
--
-- Key layout (every name comes from jobqueue/keys.py; dispatch.lua's header describes them):
--   jobs db   KEYS[1] the idempotency key    idempotency:<scope>:<key>  string, TTL: '<job id> <fingerprint>'
--             KEYS[2] index                  jobs:by-submitted
--             KEYS[3] active                 jobs:active
--   queue db  KEYS[4] queue, KEYS[5] delayed, KEYS[6] plots queue, KEYS[7] plots delayed (the lanes)
-- ARGV[1] jobs db, ARGV[2] queue db, ARGV[3] job prefix, ARGV[4] operation index prefix, ARGV[5]
-- waited prefix; ARGV[6] the request's fingerprint, ARGV[7] the key's TTL (seconds), ARGV[8] the
-- waited mark's TTL (0: none); ARGV[9..] the new job's fields as write_new reads them (id,
-- document, submit time, operation, lane, owner index key or '').
--
-- Stores the job and, in the same script, the key's record, unless the key names a job already.
-- Redis runs scripts one at a time, so of two attempts carrying one key (a client's retry after a
-- lost answer, in whatever order Redis serves them) the second finds the first's record: one job,
-- whatever the order. Answers {'stored', id, ''}; {'replayed', the key's job id, its document} for
-- a repeat of the same request (same fingerprint), or, when that job has been deleted since, stores
-- this one under the key ('stored'); {'conflict', the key's job id, ''} when the key names a
-- different request. Sent again with the same job id (redis-py's retry after a lost answer) it
-- finds its own record and answers 'stored' again. With a waited TTL the answered job is marked
-- waited for (a submit that waits for its end: announce it).

local key, index_key, active_key = KEYS[1], KEYS[2], KEYS[3]
local queue_key, delayed_key, plots_queue_key, plots_delayed_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local jobs_db, queue_db, job_prefix, operation_prefix, waited_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local fingerprint, key_seconds, waited_seconds = ARGV[6], ARGV[7], tonumber(ARGV[8])
local fields = {unpack(ARGV, 9)}

--@include lanes.lua
--@include select.lua
--@include write_new.lua

local job_id = fields[1]
use(jobs_db)
local record = redis.call('GET', key)
local answer = {'stored', job_id, ''}
if record then
  local held_id, held_fingerprint = string.match(record, '^(%S+) (%S+)$')
  if held_fingerprint ~= fingerprint then return {'conflict', held_id or '', ''} end
  if held_id ~= job_id then
    local held_doc = redis.call('GET', job_prefix .. held_id)
    if held_doc then
      answer = {'replayed', held_id, held_doc}
    else
      -- the key's job was deleted (DELETE /jobs/<id>): answering its id would announce a job
      -- that is not there, so the key is free again for the same request
      record = nil
    end
  end
end
if not record then
  redis.call('SET', key, job_id .. ' ' .. fingerprint, 'EX', key_seconds)
  write_new(fields)
end
if waited_seconds > 0 then
  use(jobs_db)
  redis.call('SET', waited_prefix .. answer[2], '1', 'EX', waited_seconds)
end
return answer
