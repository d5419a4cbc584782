-- One wrong token from one client (jobqueue_api.guesses, TOKEN_FAILURE_LIMIT): KEYS[1] is the
-- client's set of this window's wrong tokens (keys.token_failures), ARGV the token's digest, the
-- limit and the key's TTL. Atomic, so API processes and pods share one exact count: returns 1 when
-- the token may be answered 401 (counted now, or already one of the set), 0 when the client's
-- budget is spent (the set holds the limit): the token gets the 429, unchecked, and is not stored,
-- so the set never holds more than the limit.
local key, digest = KEYS[1], ARGV[1]
local limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('SCARD', key) >= limit then
  return 0
end
if redis.call('SADD', key, digest) == 1 then
  redis.call('EXPIRE', key, ttl)
end
return 1
