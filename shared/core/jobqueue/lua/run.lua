-- Piece (last in dispatch.lua and in each of a worker's scripts): runs the command(s) ARGV[12] names.

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
