"""Every Redis key name the project uses, in one place.

Jobs and results live in the jobs db (``REDIS_JOBS_DB``, default 0); the queue and everything
about delivery (processing lists, heartbeats) in the queue db (``REDIS_QUEUE_DB``, default 1), as
in the tutorial. Nothing else in the code base spells a key: grep for a prefix here to find every
user of it. ``docs/operations.md`` lists them for operators poking at Redis with redis-cli.
"""

from __future__ import annotations

# --- jobs db -------------------------------------------------------------------------------
JOB_PREFIX = "job:"
RESULT_PREFIX = "result:"
JOB_INDEX = "jobs:by-submitted"  # zset job id -> submitted time (listing, GET /jobs)
ACTIVE_INDEX = "jobs:active"  # zset job id -> submitted time, jobs not final yet (submitted, in-progress)
STATUS_INDEX_PREFIX = "jobs:by-status:"  # zset per final status: job id -> submitted time (GET /jobs?status=)
OPERATION_INDEX_PREFIX = "jobs:by-operation:"  # zset per operation: job id -> submitted time
OWNER_INDEX_PREFIX = "jobs:by-owner:"  # zset per named token's user: job id -> submitted time
HELD_PREFIX = "jobs:by-client:"  # zset per client, MAX_JOBS_PER_CLIENT only: job id -> submitted time
RESULT_CACHE_PREFIX = "result-cache:"  # request fingerprint -> id of the job holding the result
RESULT_BY_REQUEST_PREFIX = "result-by-request:"  # request fingerprint -> stored result shared by its jobs
JOB_DONE_CHANNEL = "jobs:done"  # pub/sub: "<id>\n<final document>" when a job someone waits for becomes final
WAITED_PREFIX = "jobs:waited:"  # string, TTL = the longest wait: someone waits for this job (announce its end)
ANNOUNCE_ALL = "jobs:announce-all"  # string, optional: while it exists every final job is announced
WRITE_PROBE = "api:write-probe"  # string, short TTL: readiness checks Redis accepts writes


def job(job_id: str) -> str:
    """JSON document of one job."""
    return f"{JOB_PREFIX}{job_id}"


def waited(job_id: str) -> str:
    """Marks a job a request waits for: its finish is announced on :data:`JOB_DONE_CHANNEL` only
    while this key (or :data:`ANNOUNCE_ALL`) exists, so a job nobody waits for wakes no API process."""
    return f"{WAITED_PREFIX}{job_id}"


def result(job_id: str) -> str:
    """Stored result body of a job whose result is large or binary (PNG)."""
    return f"{RESULT_PREFIX}{job_id}"


def status_index(status: str) -> str:
    """Jobs that ended with this final status (written once, when the job becomes final). Jobs not
    final yet are all in :data:`ACTIVE_INDEX`: a status change on the hot path moves no entry."""
    return f"{STATUS_INDEX_PREFIX}{status}"


def operation_index(operation: str) -> str:
    return f"{OPERATION_INDEX_PREFIX}{operation}"


def owner_index(owner: str) -> str:
    """Jobs a named token (``API_TOKENS``) submitted, so one user's listing reads only theirs. Jobs
    without an owner (no named tokens, the admin's) have no entry: a tokenless submit writes none."""
    return f"{OWNER_INDEX_PREFIX}{owner}"


def held(client: str) -> str:
    """Jobs one client (``ratelimit.client_of``: its token's name, else its address) holds in Redis,
    written only while ``MAX_JOBS_PER_CLIENT`` is on (``jobqueue_api.holdings``). Under the listing
    indexes' pattern on purpose: the workers' sweeper drops the entries of expired jobs as it does
    theirs, so the set needs no TTL of its own."""
    return f"{HELD_PREFIX}{client}"


def indexes_pattern() -> str:
    """SCAN pattern of every listing index but :data:`ACTIVE_INDEX`: every job's, each status's,
    operation's and owner's (the workers' sweeper drops their entries of expired jobs)."""
    return "jobs:by-*"


def result_by_request(fingerprint: str) -> str:
    """A stored (PNG or large JSON) result of a cacheable request: one copy however many jobs
    asked for it; each cache hit extends its TTL."""
    return f"{RESULT_BY_REQUEST_PREFIX}{fingerprint}"


def result_cache(fingerprint: str) -> str:
    return f"{RESULT_CACHE_PREFIX}{fingerprint}"


IDEMPOTENCY_PREFIX = "idempotency:"  # string, TTL: "<job id> <fingerprint>" of a submit sent with an Idempotency-Key


def idempotency(scope: str, key: str) -> str:
    """The job a caller's ``Idempotency-Key`` names (``scope``: its token's name, '' without named
    tokens; a name never holds ':', so scope and key cannot run into each other). Written by the
    keyed submit's script (``lua/store_keyed.lua``) in the same call that stores the job."""
    return f"{IDEMPOTENCY_PREFIX}{scope}:{key}"


RATE_PREFIX = "rate:submit:"  # string counter with a TTL: one client's submissions in one window


def submit_rate(client: str, window: int) -> str:
    """Submissions of one client (token name or address) in one fixed window (the API's limit)."""
    return f"{RATE_PREFIX}{client}:{window}"


WRONG_TOKENS_PREFIX = "rate:wrong-tokens:"  # sorted set, TTL: digest -> ms of one client's last wrong tokens


def wrong_tokens(client: str) -> str:
    """The distinct wrong tokens one client sent within the last ``TOKEN_FAILURE_WINDOW_SECONDS``,
    each scored with when it was last sent (Redis ``TIME``, ms), at most ``TOKEN_FAILURE_LIMIT``
    (``jobqueue_api.guesses``; ``client`` as ``ratelimit.client_of`` names it). A sliding window: a
    fixed one let a guesser send the limit just before its edge and again just after."""
    return f"{WRONG_TOKENS_PREFIX}{client}"


# --- queue db ------------------------------------------------------------------------------
HOTQUEUE_PREFIX = "hotqueue:"  # HotQueue's own naming: the list is hotqueue:<name>
PROCESSING_PREFIX = "processing:"  # per-worker list of claimed job ids
WORKERS_HEARTBEAT = "workers:heartbeat"  # zset worker id -> last heartbeat (unix seconds)
WORKERS_BUSY = "workers:busy"  # hash worker id -> job id it is running now
DELAYED_PREFIX = "delayed:"  # zset job id -> due time: retries waiting for their backoff
SWEEP_LOCK = "workers:sweep-lock"  # string, short TTL: one worker at a time runs the sweeper
PLOTS_SKIPPED = "workers:plots-skipped"  # string: claims in a row that served the default lane while plots waited
PLOTS_BUSY = "workers:busy-plots"  # hash worker id -> the plots-lane job it holds (the plots cap)
REAPED = "workers:reaped"  # set: ids the reaper took back from dead workers, until started again
KEPT_ANSWER_PREFIX = "workers:answer:"  # string, short TTL: a give back's, reap's, sweep's or retry's answer, per call
JOBS_DB_PREFIX = "queue:jobs-db:"  # string, TTL: the REDIS_JOBS_DB the API stores this queue's jobs in
ACL_REFUSED_PREFIX = "workers:acl-refused:"  # string, TTL: what Redis's ACL refuses a worker's user, while it does


def queue(name: str) -> str:
    """The list HotQueue pushes job ids onto (RPUSH) and workers take them from (left end)."""
    return f"{HOTQUEUE_PREFIX}{name}"


def lane_queue_name(queue_name: str, lane: str) -> str:
    """The default lane is the queue itself (HotQueue's list); another lane is a sibling queue."""
    return queue_name if lane == "default" else f"{queue_name}-{lane}"


def processing(worker_id: str) -> str:
    """Ids a worker has claimed and not yet finished (its lease is its heartbeat)."""
    return f"{PROCESSING_PREFIX}{worker_id}"


def kept_answer(call_id: str) -> str:
    """What one give back, reap, sweep or retry call did, kept a few minutes so that the same call
    sent again after its answer was lost answers the same (not 0, not 'lost')."""
    return f"{KEPT_ANSWER_PREFIX}{call_id}"


def jobs_db(queue_name: str) -> str:
    """The jobs db (``REDIS_JOBS_DB``) the running APIs keep this queue's job documents in, kept
    fresh by each API process (``jobqueue.jobsdb``): a worker whose own REDIS_JOBS_DB differs would
    find no document for any id it claims, so it claims nothing while they disagree."""
    return f"{JOBS_DB_PREFIX}{queue_name}"


def delayed(queue_name: str) -> str:
    """Retries of one queue waiting out their backoff; claims move due ones back to the queue."""
    return f"{DELAYED_PREFIX}{queue_name}"


def acl_refused(worker_id: str) -> str:
    """What Redis's ACL refuses one worker's user (``jobqueue.aclcheck``), written by that worker while
    it takes no jobs for it, so the API's stall check names the command (``jobqueue.backlog``)."""
    return f"{ACL_REFUSED_PREFIX}{worker_id}"
