"""A worker whose Redis ACL user lacks a command its scripts call (real redis-server 7.0, users made
with ACL SETUSER) takes no job and sends no outcome while it does (jobqueue.aclcheck), so no
script of it stops part-way: Redis does not undo a script's writes before a refused call, and a
claim refused its RPUSH after its LPOP left the id in no list until the sweeper found it, a minute
or two after the ACL was fixed. It names the command and the user, the API's stall check says so,
and it takes the jobs within a heartbeat of the fix."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from importlib import resources

import pytest
import redis

from jobqueue import aclcheck, keys
from jobqueue.backlog import read_backlog
from jobqueue.delivery import Delivery
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker
from devstack.procs import wait_until
from tests.support.harness import FakeData, Harness, operations

USER = "jq-worker"
# commands of the Lua files the worker's checks leave out, and why
NOT_CHECKED = {
    "PUBLISH": "a finish calls it last, after every write: refused, nothing is half-moved",
    "MSET": "a new job's writes (write_new.lua): the API's submit only",
    "LINDEX": "the dispatcher's 'waiting' (the API's /queue): reads",
    "ZREMRANGEBYSCORE": "the wrong-token budget (count_guess.lua): the API's only",
    "PEXPIRE": "the wrong-token budget (count_guess.lua): the API's only",
}


def _worker_user(server, *rules: str) -> str:
    """An ACL user of ``server`` with every command but ``rules`` take away; its REDIS_URL."""
    server.client().execute_command("ACL", "SETUSER", USER, "reset", "on", ">pw", "~*", "&*", "+@all", *rules)
    return f"redis://{USER}:pw@127.0.0.1:{server.port}"


def _lists(h: Harness) -> set[str]:
    """Every id in a queue, retry set or processing list."""
    q = h.queue_client
    found = set()
    for name in (h.settings.queue_name, keys.lane_queue_name(h.settings.queue_name, "plots")):
        found |= set(q.lrange(keys.queue(name), 0, -1)) | set(q.zrange(keys.delayed(name), 0, -1))
    for key in q.keys(keys.PROCESSING_PREFIX + "*"):
        found |= set(q.lrange(key, 0, -1))
    return found


def test_every_command_of_the_scripts_is_checked(harness):
    lua = resources.files("jobqueue").joinpath("lua")
    called = set()
    for piece in lua.iterdir():
        if piece.name.endswith(".lua") and piece.name != "store_keyed.lua":
            called |= set(re.findall(r"redis\.call\('([A-Z]+)'", piece.read_text()))
    checked = {c[0] for c in aclcheck.worker_commands(harness.settings, "w1")}
    assert called - checked == set(NOT_CHECKED), called - checked
    assert aclcheck.AclCheck(harness.queue_client, harness.settings, "w1").refused() == []


def test_every_command_of_the_apis_scripts_that_write_is_checked(harness):
    """The API's guard (aclcheck.Guard): a keyed submit's script, the dispatcher's cancel and store,
    and the wrong-token budget's script while the budget is on."""
    lua = resources.files("jobqueue").joinpath("lua")
    names = ("store_keyed.lua", "write_new.lua", "final.lua", "select.lua", "count_guess.lua")
    text = "".join(lua.joinpath(n).read_text() for n in names)
    dispatch = lua.joinpath("dispatch.lua").read_text()
    for command in ("cancel", "store"):
        text += re.search(rf"function commands\.{command}\(\).*?\nend\n", dispatch, re.S).group(0)
    called = set(re.findall(r"redis\.call\('([A-Z]+)'", text))
    assert "SREM" in called and "MSET" in called  # the bodies were found
    checked = {c[0] for c in aclcheck.api_commands(harness.settings)}
    assert harness.settings.token_failure_limit > 0
    assert called - checked == {"PUBLISH"}, called - checked
    assert aclcheck.Guard(harness.jobs, harness.settings).ensure() is None  # the default user: all allowed
    # the budget off (TOKEN_FAILURE_LIMIT=0): its commands are not asked for
    off = {c[0] for c in aclcheck.api_commands(dataclasses.replace(harness.settings, token_failure_limit=0))}
    assert "SCARD" not in off and "EXPIRE" not in off and "ZADD" in off


def test_the_hole_a_refused_command_leaves_in_a_script(fresh_redis):
    """Why the worker checks first: the claim script, refused its RPUSH, has already LPOPped the id."""
    h = Harness(fresh_redis.url)
    job_id = h.submit("sleep")
    refused = Harness(_worker_user(fresh_redis, "-rpush"))
    with pytest.raises(redis.exceptions.ResponseError, match=r"can.t run this command"):  # 7.0 names none
        Delivery(refused.queue_client, refused.settings).claim("w1", 1)
    assert job_id not in _lists(h)  # in no list: only the sweeper would find it


def test_a_refused_command_holds_the_jobs_in_their_lists_until_fixed(fresh_redis, caplog):
    h = Harness(fresh_redis.url)
    ids = [h.submit("sleep") for _ in range(3)]
    url = _worker_user(fresh_redis, "-rpush")
    settings = Harness(url).settings.replace(job_lease_seconds=1.5)  # a heartbeat (and check) every 0.5 s
    worker = Worker(settings, operations(), FakeData(), worker_id="w1")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    thread.start()
    try:
        wait_until(lambda: h.queue_client.exists(keys.acl_refused("w1")), 10, "the refusal recorded")
        time.sleep(1.0)  # two heartbeats: still nothing claimed
        assert h.queue_client.lrange(keys.queue(h.settings.queue_name), 0, -1) == ids
        assert h.queue_client.llen(keys.processing("w1")) == 0
        assert "'rpush'" in h.queue_client.get(keys.acl_refused("w1"))
        (said,) = [r for r in caplog.records if r.levelno == logging.ERROR and "NOPERM" in r.getMessage()]
        assert "'rpush'" in said.refused and said.acl_user == USER and USER in said.hint
        # the API's stall check names it, once the jobs have waited a lease
        time.sleep(max(0.0, settings.job_lease_seconds - 1.0))
        backlog = read_backlog(settings, h.queue_client, h.jobs)
        assert backlog.stalled and "ACL" in backlog.stalled and "'rpush'" in backlog.stalled, backlog.stalled
        fixed = time.monotonic()
        fresh_redis.client().execute_command("ACL", "SETUSER", USER, "+rpush")
        wait_until(lambda: all(h.store.get(i).status is JobStatus.COMPLETE for i in ids), 10, "the jobs done")
        took = time.monotonic() - fixed
    finally:
        worker.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert took < 3.0, took  # a heartbeat (0.5 s) and the jobs, not the sweeper's minute
    assert [h.store.get(i).attempts for i in ids] == [1, 1, 1]
    assert not h.queue_client.exists(keys.acl_refused("w1"))
    assert read_backlog(settings, h.queue_client, h.jobs).stalled is None
    assert "redis ACL allows this worker's commands again: taking jobs" in [r.getMessage() for r in caplog.records]


def test_a_worker_refused_its_heartbeats_command_is_named_by_the_stall_check(fresh_redis):
    """A user refused a command the heartbeat calls too (``TIME``; likewise ``EVALSHA`` or ``SCRIPT``,
    which the README's ``+@read +@write`` user lacks) leaves its worker without a heartbeat, though it
    records the refusal: the stall check said "no live worker has a heartbeat ... make their
    REDIS_URL, REDIS_QUEUE_DB and QUEUE_NAME match the API's", which they did. It names the command."""
    h = Harness(fresh_redis.url)
    job_id = h.submit("sleep")
    settings = Harness(_worker_user(fresh_redis, "-time")).settings.replace(job_lease_seconds=1.5)
    worker = Worker(settings, operations(), FakeData(), worker_id="w1")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: h.queue_client.exists(keys.acl_refused("w1")), 10, "the refusal recorded")
        time.sleep(settings.job_lease_seconds)  # the job has waited a lease
        backlog = read_backlog(settings, h.queue_client, h.jobs)
        assert backlog.workers_alive == 0, backlog  # no heartbeat: the beat calls TIME
        assert backlog.stalled and "ACL" in backlog.stalled and "'time'" in backlog.stalled, backlog.stalled
        assert "no live worker" not in backlog.stalled
        from jobqueue_api import create_app  # GET /queue (the web page, jobqueue info) says the same

        api = create_app(h.settings.replace(job_lease_seconds=1.5), load_data=False).test_client()
        assert "'time'" in api.get("/queue").get_json()["stalled_reason"]
        fresh_redis.client().execute_command("ACL", "SETUSER", USER, "+time")
        wait_until(lambda: h.store.get(job_id).status is JobStatus.COMPLETE, 10, "the job done")
    finally:
        worker.request_stop()
        thread.join(10)
    # a worker with no heartbeat and no record is still "no live worker"
    h.queue_client.delete(keys.acl_refused("w1"), keys.WORKERS_HEARTBEAT)
    h.submit("sleep")
    time.sleep(settings.job_lease_seconds)
    assert "no live worker" in read_backlog(settings, h.queue_client, h.jobs).stalled


def test_a_user_refused_info_still_reaps_a_dead_workers_jobs(fresh_redis):
    """The README's narrower user (``+@all -@dangerous``, a managed Redis's default) is refused
    ``INFO``, which the reaper read Redis's uptime from: every reap raised NOPERM, and the sweep after
    it in the same housekeeping round never ran, so a job whose worker died stayed in progress for
    good (found by running the service under such a user and killing a worker with -9). Without
    ``INFO`` the reaper counts the time this worker has seen Redis answer without a break instead."""
    h = Harness(fresh_redis.url)
    url = _worker_user(fresh_redis, "-@dangerous", "+client|id", "+client|kill")
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(url).info("server")
    job_id = h.submit("sleep")
    assert [i for i, _ in h.delivery.claim("dead", 1)] == [job_id]  # claimed, then killed -9
    h.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"dead": time.time() - 100})
    settings = Harness(url).settings.replace(job_lease_seconds=1.5)
    user_delivery = Delivery(Harness(url).jobs, settings)
    # a reaper that has not yet seen Redis up for a lease keeps its hands off (a restart's stale beats)
    assert user_delivery.redis_uptime() is None and user_delivery.reap(1.5, seen_up=0.5) == (0, 0)
    assert h.queue_client.lrange(keys.processing("dead"), 0, -1) == [job_id]

    worker = Worker(settings, operations(), FakeData(), worker_id="alive")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: h.store.get(job_id).status is JobStatus.COMPLETE, 15, "the dead worker's job run")
    finally:
        worker.request_stop()
        thread.join(10)
    assert h.store.get(job_id).worker == "alive" and not h.queue_client.exists(keys.processing("dead"))
    assert worker.acl.refused is None  # INFO is not one of the commands the worker needs


def test_a_restart_between_two_beats_keeps_the_reaper_off_a_live_workers_job(fresh_redis):
    """Under a user refused ``INFO`` the reaper counted how long it had seen Redis answer, so a Redis
    restart between two of its beats (one it never saw fail) that restored heartbeats older than a
    lease (an RDB saved a while ago) had it requeue a live worker's job, which then ran twice (seen
    with ``make up``, a ``sleep`` job and ``kill -9`` of redis-server after a ``SAVE``). The emptied
    script cache tells it of the restart: it waits a lease, the live worker beats meanwhile."""
    h = Harness(fresh_redis.url)
    url = _worker_user(fresh_redis, "-@dangerous", "+client|id", "+client|kill")
    settings = Harness(url).settings.replace(job_lease_seconds=3.0)  # a beat a second, a reap every 1.5 s
    job_id = h.submit("sleep")
    assert [i for i, _ in h.delivery.claim("alive", 1)] == [job_id]
    reaper = Worker(settings, operations(), FakeData(), worker_id="reaper")
    thread = threading.Thread(target=reaper.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 4.5  # the reaper sees Redis up for more than a lease
        while time.monotonic() < deadline:
            h.delivery.heartbeat("alive")
            time.sleep(0.3)
        assert h.queue_client.lrange(keys.processing("alive"), 0, -1) == [job_id]
        fresh_redis.stop()
        fresh_redis.start()
        _worker_user(fresh_redis, "-@dangerous", "+client|id", "+client|kill")  # ACL users are not saved
        # the restored beat is older than a lease (a save from before), the worker itself alive
        h.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"alive": time.time() - 10})
        time.sleep(2.5)  # past the reaper's next reap, short of a lease after the restart
        assert h.queue_client.lrange(keys.processing("alive"), 0, -1) == [job_id]
        # a worker that really is dead (no beat since) is still reaped, a lease later
        wait_until(lambda: not h.queue_client.exists(keys.processing("alive")), 10, "the silent worker reaped")
    finally:
        reaper.request_stop()
        thread.join(10)


def test_a_refused_heartbeat_is_said_once_a_minute_not_each_beat(fresh_redis, caplog):
    """The heartbeat thread logged each NOPERM it met, every beat (lease/3, at most 5 s), on top of
    the gate's error once a minute: an operator's log filled with the same line. The gate says it."""
    url = _worker_user(fresh_redis, "-zadd")
    settings = Harness(url).settings.replace(job_lease_seconds=0.6)  # a beat every 0.2 s
    worker = Worker(settings, operations(), FakeData(), worker_id="w-beat")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    caplog.set_level(logging.INFO, logger="jobqueue.worker")
    thread.start()
    try:
        wait_until(lambda: worker.acl.refused is not None, 10, "the refusal found")
        time.sleep(1.5)  # seven beats or so
    finally:
        worker.request_stop()
        thread.join(10)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "NOPERM" in r.getMessage()]
    assert len(errors) == 1 and "'zadd'" in errors[0].refused, [
        (r.getMessage(), r.__dict__.get("refused")) for r in errors
    ]


def test_burst_takes_nothing_and_exits_2(fresh_redis, caplog):
    h = Harness(fresh_redis.url)
    job_id = h.submit("sleep")
    worker = Worker(Harness(_worker_user(fresh_redis, "-lpush")).settings, operations(), FakeData(), worker_id="w1")
    with caplog.at_level(logging.ERROR, logger="jobqueue.worker"):
        assert worker.work(burst=True, install_signals=False) == 2
    assert h.queue_client.lrange(keys.queue(h.settings.queue_name), 0, -1) == [job_id]
    assert h.store.get(job_id).status is JobStatus.SUBMITTED
    assert any("'lpush'" in getattr(r, "refused", "") for r in caplog.records)


def test_a_key_outside_the_users_patterns_is_refused_as_a_command_is(fresh_redis):
    """A user limited to some key patterns (no processing lists) is caught by the same check."""
    url = _worker_user(fresh_redis, "resetkeys", "~hotqueue:*", "~job:*", "~jobs:*", "~workers:*", "~delayed:*")
    refused = Harness(url)
    found = aclcheck.AclCheck(refused.queue_client, refused.settings, "w1").refused()
    assert found and {r.name for r in found} >= {"rpush", "lrange", "lrem"}
    assert all("processing:w1" in r.describe() or "result" in r.describe() for r in found), found


def test_an_acl_narrowed_mid_job_holds_its_outcome_whole(fresh_redis, caplog):
    """Refused ZREM (the finish's move of the job out of jobs:active, after its LREM and final SET)
    while a job runs: its outcome waits, the id stays in the processing list, the document
    in-progress; after the fix the finish applies whole, attempt 1."""
    h = Harness(fresh_redis.url)
    job_id = h.submit("sleep", {"seconds": 1.5})
    url = _worker_user(fresh_redis)
    settings = Harness(url).settings.replace(job_lease_seconds=1.5)
    worker = Worker(settings, operations(), FakeData(), worker_id="w1")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    caplog.set_level(logging.WARNING, logger="jobqueue.worker")
    thread.start()
    try:
        wait_until(lambda: h.queue_client.llen(keys.processing("w1")) == 1, 10, "the job claimed")
        fresh_redis.client().execute_command("ACL", "SETUSER", USER, "-zrem")
        wait_until(lambda: worker.acl.refused is not None, 5, "the refusal seen")
        time.sleep(2.0)  # the job has ended meanwhile: its finish waits
        assert h.queue_client.lrange(keys.processing("w1"), 0, -1) == [job_id]
        assert h.store.get(job_id).status is JobStatus.IN_PROGRESS
        fresh_redis.client().execute_command("ACL", "SETUSER", USER, "+zrem")
        wait_until(lambda: h.store.get(job_id).status is JobStatus.COMPLETE, 5, "the job done")
    finally:
        worker.request_stop()
        thread.join(10)
    assert h.store.get(job_id).attempts == 1
    assert h.jobs.zscore(keys.status_index("complete"), job_id) is not None
    assert h.jobs.zscore(keys.ACTIVE_INDEX, job_id) is None
    assert h.queue_client.llen(keys.processing("w1")) == 0
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
