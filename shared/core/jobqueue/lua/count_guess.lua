-- One token from one client against its wrong-token budget (jobqueue_api.guesses,
-- TOKEN_FAILURE_LIMIT in a sliding window of TOKEN_FAILURE_WINDOW_SECONDS). KEYS[1] is the client's
-- sorted set of wrong-token digests scored with when each was last sent (keys.wrong_tokens); ARGV
-- the digest ('' for a right token: only asks), the limit and the window in ms. Redis's own clock
-- (TIME), so API processes and pods on skewed clocks share one window; atomic, so they share one
-- exact count. Returns {1, 0} when the token may be answered (a wrong one is counted now, or its
-- time renewed if already in the set), {0, ms} when the budget is spent: the token gets the 429,
-- unchecked and not stored (the set never holds more than the limit), ms until the oldest entry
-- leaves the window and frees one place.
local key, digest = KEYS[1], ARGV[1]
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
if digest ~= '' then
  redis.call('ZADD', key, now, digest)
  redis.call('PEXPIRE', key, window)
end
return {1, 0}
