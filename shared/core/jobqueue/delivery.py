"""At-least-once delivery: claim, start, finish, retry, reap and sweep, each one atomic Lua script.

Ownership of a job id is its presence in a worker's processing list ``processing:<worker>``
(queue db). A claim moves ids there from the queue list atomically; a worker's lease is its
heartbeat in ``workers:heartbeat``; the reaper moves the ids of a worker silent for longer than the
lease back to the front of the queue. Finishing removes the id from the processing list and writes
the final job document *in the same script*, and only if the id was still there and the document is
not already final: that fencing is why a job that ran twice still ends with exactly one final
result. The scripts ``SELECT`` the jobs db for the documents (a script's SELECT stays inside the
script), so claim+read and finish+write are each one round trip. All times come from Redis's own
clock (``TIME``), so worker hosts with skewed clocks cannot reap each other early.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable

import redis

from . import keys
from .settings import Settings

log = logging.getLogger(__name__)

_FINAL = "st == 'complete' or st == 'failed' or st == 'cancelled'"
# an unreadable document has no status (the worker then records it as failed) instead of an error
_STATUS_OF = """local function status_of(doc)
  local ok, d = pcall(cjson.decode, doc)
  if ok and type(d) == 'table' then return d['status'] end
  return nil
end
"""

# KEYS: queue, processing, heartbeat, delayed.  ARGV: worker, n, jobs db, job prefix, ids already held...
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[3], now, ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('RPUSH', KEYS[1], id)
end
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
for i = 1, tonumber(ARGV[2]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  ids[#ids + 1] = id
end
if #ids == 0 then return {} end
redis.call('SELECT', ARGV[3])
local jk = {}
for i, id in ipairs(ids) do jk[i] = ARGV[4] .. id end
local docs = redis.call('MGET', unpack(jk))
local out = {}
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = docs[i] or ''
end
return out
"""

# KEYS: processing, busy, job.  ARGV: id, worker, jobs db, queue db, in-progress doc, cache key, job prefix
START = _STATUS_OF + """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return {'gone'} end
redis.call('SELECT', ARGV[3])
local cur = redis.call('GET', KEYS[3])
local final = true
if cur then
  local st = status_of(cur)
  final = (%(final)s)
end
if final then
  redis.call('SELECT', ARGV[4])
  redis.call('LREM', KEYS[1], 1, ARGV[1])
  return {'skip'}
end
redis.call('SET', KEYS[3], ARGV[5])
local answer = {'ok'}
if ARGV[6] ~= '' then
  local src = redis.call('GET', ARGV[6])
  if src then
    local doc = redis.call('GET', ARGV[7] .. src)
    if doc then
      local okd, d = pcall(cjson.decode, doc)
      if not okd or type(d) ~= 'table' then d = {} end
      local ref_ok = type(d['result_ref']) ~= 'string' or redis.call('EXISTS', d['result_ref']) == 1
      if d['status'] == 'complete' and ref_ok then answer = {'cached', doc} end
    end
  end
end
redis.call('SELECT', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return answer
""" % {"final": _FINAL}

# KEYS: processing, busy, job, result, cache.
# ARGV: id, worker, jobs db, final doc, ttl, result blob, copy-from key, set cache (1/0), channel
FINISH = _STATUS_OF + """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 'lost' end
redis.call('SELECT', ARGV[3])
local cur = redis.call('GET', KEYS[3])
if not cur then return 'deleted' end
local st = status_of(cur)
if %(final)s then return 'final' end
local ttl = tonumber(ARGV[5])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ttl)
elseif ARGV[7] ~= '' then
  redis.call('COPY', ARGV[7], KEYS[4], 'REPLACE')
  redis.call('EXPIRE', KEYS[4], ttl)
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ttl)
if ARGV[8] == '1' then redis.call('SET', KEYS[5], ARGV[1], 'EX', ttl) end
redis.call('PUBLISH', ARGV[9], ARGV[1])
return 'ok'
""" % {"final": _FINAL}

# KEYS: processing, busy, job, delayed, queue.  ARGV: id, worker, jobs db, queue db, doc, delay seconds
RETRY = _STATUS_OF + """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 'lost' end
redis.call('SELECT', ARGV[3])
local cur = redis.call('GET', KEYS[3])
if not cur then redis.call('SELECT', ARGV[4]) return 'deleted' end
local st = status_of(cur)
if %(final)s then return 'final' end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('SELECT', ARGV[4])
local delay = tonumber(ARGV[6])
if delay <= 0 then
  redis.call('LPUSH', KEYS[5], ARGV[1])
else
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[4], tonumber(t[1]) + tonumber(t[2]) / 1e6 + delay, ARGV[1])
end
return 'ok'
""" % {"final": _FINAL}

# KEYS: heartbeat, queue, busy.  ARGV: lease seconds, processing prefix
REAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local moved = 0
for _, w in ipairs(dead) do
  local plist = ARGV[2] .. w
  while redis.call('LMOVE', plist, KEYS[2], 'RIGHT', 'LEFT') do moved = moved + 1 end
  redis.call('ZREM', KEYS[1], w)
  redis.call('HDEL', KEYS[3], w)
end
return {moved, #dead}
"""

# KEYS: processing, queue.  ARGV: ids to give back (unstarted), front of the queue, order kept
GIVE_BACK = """
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS: queue, delayed, heartbeat.  ARGV: id, processing prefix, jobs db, job prefix, queue db
SWEEP_ONE = _STATUS_OF + """
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
for _, w in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('LPOS', ARGV[2] .. w, ARGV[1]) then return 0 end
end
redis.call('SELECT', ARGV[3])
local cur = redis.call('GET', ARGV[4] .. ARGV[1])
if not cur or status_of(cur) ~= 'submitted' then return 0 end
redis.call('SELECT', ARGV[5])
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""


def _then_start(first: str) -> str:
    """One script that records job i (``first``: FINISH or RETRY) and starts job i+1: the per-job
    round trip of a busy worker costs one script call. ARGV[1], ARGV[2]: how many KEYS and ARGV
    belong to the first part; START re-selects the queue db the first part may have left."""
    return (
        "local function first(KEYS, ARGV)\n" + first + "\nend\n"
        "local function start(KEYS, ARGV)\nredis.call('SELECT', ARGV[4])\n" + START + "\nend\n"
        """local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {}, {}, {}, {}
for i = 1, #KEYS do if i <= nk then k1[#k1 + 1] = KEYS[i] else k2[#k2 + 1] = KEYS[i] end end
for i = 3, #ARGV do if i - 2 <= na then a1[#a1 + 1] = ARGV[i] else a2[#a2 + 1] = ARGV[i] end end
local r1 = first(k1, a1)
return {r1, start(k2, a2)}
""")


_SCRIPTS = {"claim": CLAIM, "start": START, "finish": FINISH, "retry": RETRY, "reap": REAP,
            "give_back": GIVE_BACK, "sweep_one": SWEEP_ONE,
            "finish_start": _then_start(FINISH), "retry_start": _then_start(RETRY)}


@dataclass
class StartAnswer:
    state: str                  # ok | cached | skip (final or deleted: acked) | gone (not ours any more)
    cached_doc: str | None = None


class Delivery:
    """The delivery scripts bound to one queue and one Redis (queue db client).

    Methods that a worker pipelines (``start``/``finish``/``retry``) have ``*_args`` twins that return
    the EVALSHA arguments, so a caller can put "finish job i" and "start job i+1" in one round trip.
    """

    def __init__(self, client: redis.Redis, settings: Settings):
        self.redis = client
        self.settings = settings
        self.queue_key = keys.queue(settings.queue_name)
        self.delayed_key = keys.delayed(settings.queue_name)
        self.jobs_db = str(settings.redis_jobs_db)
        self.queue_db = str(settings.redis_queue_db)
        self.ttl = str(settings.job_ttl_seconds)
        self.sha = {name: _sha1(src) for name, src in _SCRIPTS.items()}

    # --- script plumbing: EVALSHA, loading the script when Redis forgot it (restart) ---------
    def load(self) -> None:
        for name, src in _SCRIPTS.items():
            self.sha[name] = self.redis.script_load(src)

    def call(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        try:
            return self.redis.evalsha(self.sha[name], len(keys_), *keys_, *args)
        except redis.exceptions.NoScriptError:
            self.load()
            return self.redis.evalsha(self.sha[name], len(keys_), *keys_, *args)

    def run_pipeline(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several scripts in one round trip; a NOSCRIPT answer reloads and re-runs that call only.

        A single call goes without a pipeline, and "record job i, start job i+1" as one script.
        """
        if len(calls) == 1:
            return [self.call(*calls[0])]
        if len(calls) == 2 and calls[1][0] == "start" and calls[0][0] in ("finish", "retry"):
            (n1, k1, a1), (_n2, k2, a2) = calls
            first, started = self.call(f"{n1}_start", [*k1, *k2], [len(k1), len(a1), *a1, *a2])
            return [first, started]
        pipe = self.redis.pipeline(transaction=False)
        for name, k, a in calls:
            pipe.evalsha(self.sha[name], len(k), *k, *a)
        results = pipe.execute(raise_on_error=False)
        out = []
        for (name, k, a), res in zip(calls, results):
            if isinstance(res, redis.exceptions.NoScriptError):
                res = self.call(name, k, a)
            elif isinstance(res, Exception):
                raise res
            out.append(res)
        return out

    # --- the operations -------------------------------------------------------------------
    def claim(self, worker: str, n: int, held: Iterable[str] = ()) -> list[tuple[str, str]]:
        """Claim up to ``n`` ids (plus ``held`` ones already moved by BLMOVE); (id, doc JSON or '')."""
        flat = self.call("claim", [self.queue_key, keys.processing(worker), keys.WORKERS_HEARTBEAT,
                                   self.delayed_key], [worker, n, self.jobs_db, keys.JOB_PREFIX, *held])
        return list(zip(flat[0::2], flat[1::2]))

    def wait_one(self, worker: str, timeout: float) -> str | None:
        """Block up to ``timeout`` for one id, moved atomically into the processing list."""
        return self.redis.blmove(self.queue_key, keys.processing(worker), timeout, "LEFT", "RIGHT")

    def start_args(self, worker: str, job_id: str, doc: str, cache_key: str = "") -> tuple[str, list, list]:
        return ("start", [keys.processing(worker), keys.WORKERS_BUSY, keys.job(job_id)],
                [job_id, worker, self.jobs_db, self.queue_db, doc, cache_key, keys.JOB_PREFIX])

    def finish_args(self, worker: str, job_id: str, doc: str, blob: bytes | str = "", copy_from: str = "",
                    cache_key: str = "") -> tuple[str, list, list]:
        return ("finish", [keys.processing(worker), keys.WORKERS_BUSY, keys.job(job_id), keys.result(job_id),
                           cache_key or keys.result_cache("-")],
                [job_id, worker, self.jobs_db, doc, self.ttl, blob, copy_from, "1" if cache_key else "0",
                 keys.JOB_DONE_CHANNEL])

    def retry_args(self, worker: str, job_id: str, doc: str, delay: float) -> tuple[str, list, list]:
        return ("retry", [keys.processing(worker), keys.WORKERS_BUSY, keys.job(job_id), self.delayed_key,
                          self.queue_key],
                [job_id, worker, self.jobs_db, self.queue_db, doc, repr(float(delay))])

    @staticmethod
    def start_answer(raw: list) -> StartAnswer:
        return StartAnswer(raw[0], raw[1] if len(raw) > 1 else None)

    def heartbeat(self, worker: str) -> None:
        self.redis.zadd(keys.WORKERS_HEARTBEAT, {worker: _server_now(self.redis)})

    def reap(self, lease_seconds: float, min_uptime: float | None = None) -> tuple[int, int]:
        """Requeue the ids of workers silent for longer than the lease: (ids moved, workers reaped).

        Safe with any number of reapers at once: the script is atomic, a second reaper finds nothing.
        Skipped while Redis itself has been up for less than a lease, so that after a Redis restart
        live workers get the time to heartbeat again before anyone is declared dead.
        """
        uptime = int(self.redis.info("server").get("uptime_in_seconds", 0))
        if uptime < (lease_seconds if min_uptime is None else min_uptime):
            return (0, 0)
        moved, dead = self.call("reap", [keys.WORKERS_HEARTBEAT, self.queue_key, keys.WORKERS_BUSY],
                                [repr(float(lease_seconds)), keys.PROCESSING_PREFIX])
        return int(moved), int(dead)

    def give_back(self, worker: str, job_ids: list[str]) -> int:
        """Return claimed-but-unstarted ids to the front of the queue (graceful shutdown)."""
        if not job_ids:
            return 0
        return int(self.call("give_back", [keys.processing(worker), self.queue_key], list(job_ids)))

    def leave(self, worker: str) -> int:
        """On exit: give back whatever is still held, and drop the heartbeat."""
        held = self.redis.lrange(keys.processing(worker), 0, -1)
        n = self.give_back(worker, held)
        pipe = self.redis.pipeline()
        pipe.zrem(keys.WORKERS_HEARTBEAT, worker)
        pipe.hdel(keys.WORKERS_BUSY, worker)
        pipe.execute()
        return n

    def held(self, worker: str) -> list[str]:
        return self.redis.lrange(keys.processing(worker), 0, -1)

    def sweep(self, jobs: redis.Redis, older_than: float, chunk: int = 500) -> int:
        """Requeue jobs stuck ``submitted`` in no list (the API died between writing the doc and the put).

        Scans the job index for jobs submitted more than ``older_than`` seconds ago whose status is
        still ``submitted``; a snapshot of the lists filters out the ones plainly queued, and for each
        remaining one an atomic script checks every list again before pushing it. Returns how many.
        """
        now = _server_now(self.redis)
        queued = set(self.redis.lrange(self.queue_key, 0, -1))
        queued.update(self.redis.zrange(self.delayed_key, 0, -1))
        for worker in self.redis.zrange(keys.WORKERS_HEARTBEAT, 0, -1):
            queued.update(self.redis.lrange(keys.processing(worker), 0, -1))
        requeued = 0
        start = 0
        while True:
            ids = jobs.zrangebyscore(keys.JOB_INDEX, "-inf", now - older_than, start=start, num=chunk)
            if not ids:
                break
            start += len(ids)
            for job_id, raw in zip(ids, jobs.mget([keys.job(i) for i in ids])):
                if raw is None or job_id in queued:
                    continue
                if json.loads(raw).get("status") != "submitted":
                    continue
                requeued += int(self.call("sweep_one", [self.queue_key, self.delayed_key, keys.WORKERS_HEARTBEAT],
                                          [job_id, keys.PROCESSING_PREFIX, self.jobs_db, keys.JOB_PREFIX,
                                           self.queue_db]))
        return requeued

    def try_lock_sweep(self, seconds: float) -> bool:
        """One sweeper at a time across all workers: a key with a TTL, taken with SET NX."""
        return bool(self.redis.set(keys.SWEEP_LOCK, "1", nx=True, ex=max(1, int(seconds))))


def _server_now(client: redis.Redis) -> float:
    sec, usec = client.time()
    return sec + usec / 1e6


def _sha1(src: str) -> str:
    import hashlib

    return hashlib.sha1(src.encode()).hexdigest()
