"""Concurrent ``GET /status/<id>`` reads of one API process share one ``MGET``
(``jobqueue_api.batching.GroupCall``, the submit group commit's mechanism), and each caller still
gets its own job, a 404 for an unknown one, and a JSON 503 (never a 500, never a hang) when Redis
does not answer.

Counted on a real redis-server (``INFO commandstats``): with threads (each caller its own document),
with greenlets under gevent's patching in a child process (readers woken in the same turn of the
event loop ride in the lead's call), and through
the real ``jobqueue-api`` while Redis holds every command back (``CLIENT PAUSE``), so that the reads
of each process pile up behind its first one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from devstack.api_server import api_server
from devstack.paths import REPO_ROOT
from devstack.procs import wait_until
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue.connections import jobs_redis
from jobqueue.jobs import JobStatus, JobStore, new_job_id
from jobqueue.settings import load_settings
from jobqueue_api.batching import GroupCall

from .support import finish, make_settings, redis_and_api, spawn


def _complete(jobs, result=None) -> str:
    """A job stored and finished as a worker reports it; its id."""
    job = JobStore(jobs, 3600).create("sleep", {})
    finish(jobs, job.id, result=result)
    return job.id


def _reads(client) -> int:
    """GET and MGET calls Redis has run since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


def test_concurrent_reads_share_one_mget_and_each_caller_gets_its_own_document(redis_url):
    jobs = jobs_redis(make_settings(redis_url))
    store = JobStore(jobs, 3600)
    ids = [_complete(jobs, {"n": n}) for n in range(9)] + [new_job_id() for _ in range(3)]
    first_call, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def read_many(batch):
        batches.append(list(batch))
        if len(batches) == 1:  # hold the first call until everyone else waits behind it
            first_call.set()
            assert release.wait(10)
        return store.get_raw_many(batch)

    reads = GroupCall(read_many)
    jobs.config_resetstat()
    first = spawn(reads.call, ids[0])
    assert first_call.wait(10)
    rest = [spawn(reads.call, job_id) for job_id in ids[1:]]
    wait_until(lambda: reads.waiting == 11, 60, "11 reads queued behind the first call")
    release.set()
    docs = [first.result(10)] + [f.result(10) for f in rest]

    assert [len(b) for b in batches] == [1, 11]
    assert _reads(jobs) == 2  # two MGETs for twelve reads
    for n, (job_id, doc) in enumerate(zip(ids[:9], docs[:9])):
        assert json.loads(doc)["id"] == job_id and json.loads(doc)["result"] == {"n": n}
    assert docs[9:] == [None, None, None]  # unknown ids: nothing, for their callers only


def test_when_redis_does_not_answer_the_reads_queued_behind_get_the_error_without_a_call(redis_url):
    """A call that times out fails the callers queued behind it with the same error at once: each
    of them would otherwise wait out a timeout of its own after the lead's (seen: 25 s instead of 10
    for 16 readers of a stopped Redis). A refusal (any other error) is the lead's alone."""
    from jobqueue_api.state import _unreachable

    jobs = jobs_redis(make_settings(redis_url))
    store = JobStore(jobs, 3600)
    known = _complete(jobs)
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def read_many(batch):
        calls.append(list(batch))
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        if len(calls) == 2:
            raise redis.exceptions.ResponseError("WRONGTYPE")
        return store.get_raw_many(batch)

    reads = GroupCall(read_many, fails_queue=_unreachable)
    first = spawn(reads.call, known)
    assert entered.wait(10)
    queued = [spawn(reads.call, known) for _ in range(5)]
    wait_until(lambda: reads.waiting == 5, 60, "5 reads queued")
    release.set()
    for future in [first, *queued]:
        with pytest.raises(redis.exceptions.TimeoutError):
            future.result(10)
    assert len(calls) == 1  # the queued five made no call of their own

    second = spawn(reads.call, known)  # the lead was dropped: the next read calls again
    with pytest.raises(redis.exceptions.ResponseError):
        second.result(10)
    assert json.loads(reads.call(known))["id"] == known
    assert len(calls) == 3


def test_a_lead_waits_for_the_company_the_last_call_had_and_a_lone_reader_never_waits():
    """Several clients of one process send their next reads a little apart: the lead waits (up to
    ``linger``) until as many are queued as the last call carried, so they share its MGET instead
    of the first going alone and the rest in the next call. A lone client (last call: one item)
    never waits, and a lead whose company does not come goes when the linger is out."""
    calls: list[list[str]] = []
    entered, release = threading.Event(), threading.Event()

    def read_many(batch):
        calls.append(list(batch))
        if batch == ["a0"]:  # held until three more wait behind it
            entered.set()
            assert release.wait(10)
        return [f"doc-{i}" for i in batch]

    reads = GroupCall(read_many, linger=30.0)  # long: only the company arriving ends the wait
    assert spawn(reads.call, "solo").result(10) == "doc-solo"  # the last call carried one: no wait
    calls.clear()
    first = spawn(reads.call, "a0")
    assert entered.wait(10)
    rest = [spawn(reads.call, f"a{i}") for i in (1, 2, 3)]
    wait_until(lambda: reads.waiting == 3, 60, "3 reads queued")
    release.set()
    assert [f.result(10) for f in [first, *rest]] == ["doc-a0", "doc-a1", "doc-a2", "doc-a3"]
    assert calls == [["a0"], ["a1", "a2", "a3"]]  # the last call carried three

    lead = spawn(reads.call, "b0")
    wait_until(lambda: reads._filled is not None, 60, "the lead waiting for company")
    company = [spawn(reads.call, job_id) for job_id in ("b1", "b2")]
    assert [f.result(10) for f in [lead, *company]] == ["doc-b0", "doc-b1", "doc-b2"]
    assert calls[-1] == ["b0", "b1", "b2"]  # one MGET, not ["b0"] then ["b1", "b2"]

    short = GroupCall(read_many, linger=0.05)
    short._last = 3
    assert spawn(short.call, "c0").result(10) == "doc-c0"  # nobody came: it went when the linger ran out


GREEN_READS = r"""
from gevent import monkey
monkey.patch_all()
import gevent, json
from jobqueue_api.batching import GroupCall

calls = []
def read_many(batch):
    calls.append(list(batch))
    gevent.sleep(0.01)          # a round trip: the lead waits, others may queue
    return [f"doc-{i}" for i in batch]

reads = GroupCall(read_many)
together = [gevent.spawn(reads.call, f"r{i}") for i in range(10)]   # woken in one turn
gevent.joinall(together, timeout=5)
print(json.dumps({"calls": calls, "answers": [g.value for g in together]}))
"""


def test_under_gevent_readers_woken_together_go_in_the_leads_call():
    """Requests running in one process at once: the first read to reach the group call yields once
    before its MGET, so the others are in it too, and each gets its own document."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "services" / "api"), str(REPO_ROOT / "shared" / "core")]),
    }
    out = subprocess.run([sys.executable, "-c", GREEN_READS], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["calls"] == [[f"r{i}" for i in range(10)]], result
    assert result["answers"] == [f"doc-r{i}" for i in range(10)]


# --- through the real API ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with redis_and_api(tmp_path_factory.mktemp("reads")) as (server, api):
        yield api, server


def test_status_reads_held_up_by_redis_go_in_few_calls_and_each_answer_is_its_own(api):
    api, server = api
    jobs = jobs_redis(load_settings({"REDIS_URL": server.url}))
    known = [_complete(jobs, {"n": n}) for n in range(40)]
    unknown = [new_job_id() for _ in range(8)]
    asked = known + unknown
    for job_id in asked[:4]:  # warm each process's connections, so the pause holds reads only
        requests.get(f"{api.url}/status/{job_id}", timeout=10)
    jobs.config_resetstat()
    jobs.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # the reads pile up behind each process's first

    def one(job_id):
        response = requests.get(f"{api.url}/status/{job_id}", timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(len(asked)) as pool:
        answers = list(pool.map(one, asked))
    for n, (job_id, (status, body)) in enumerate(zip(known, answers)):
        assert status == 200 and body["job_id"] == job_id and body["status"] == JobStatus.COMPLETE.value, body
        assert body["result"] == {"n": n}, body
    for job_id, (status, body) in zip(unknown, answers[len(known) :]):
        assert status == 404 and body["error"] == "job_not_found" and body["job_id"] == job_id, body
    calls = _reads(jobs)
    print(f"{len(asked)} status reads in {calls} calls")
    assert calls <= len(asked) // 4, calls  # one GET each before; typically 2-4 now (per process: first, rest)


@pytest.mark.slow
def test_a_redis_that_stops_answering_gets_each_reader_a_503_not_a_hang(tmp_path):
    """SIGSTOP: connections stay open and nothing answers. Every concurrent reader, the lead's
    and those queued behind it, gets a JSON 503 once redis-py's reply timeout runs out (5 s, retried
    once on timeout; twice that for those queued behind a call that times out), not a hang, and
    reads work again once Redis does."""
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path / "redis").start()
    try:
        jobs = jobs_redis(load_settings({"REDIS_URL": server.url}))
        job_id = _complete(jobs)
        with api_server(server.url, tmp_path / "api") as api:
            url = f"{api.url}/status/{job_id}"
            assert requests.get(url, timeout=10).status_code == 200
            server.proc.send_signal(signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                with ThreadPoolExecutor(16) as pool:
                    answers = list(pool.map(lambda _: requests.get(url, timeout=90), range(16)))
                print(f"16 readers answered 503 in {time.monotonic() - t0:.1f} s")
            except requests.Timeout:
                pytest.fail("a status read hung while Redis was stopped")
            finally:
                server.proc.send_signal(signal.SIGCONT)
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "redis_unavailable", answer.text
            assert requests.get(url, timeout=10).json()["status"] == "complete"  # the lead was handed back
    finally:
        server.stop()


def _calls(client, name: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def test_concurrent_long_polls_first_reads_share_mgets_too(api):
    """``GET /status/<id>?wait=`` reads the job once before it waits: through the grouped reads, as
    a plain status read (one GET per long poll before), and so does the read of a running job when
    its wait runs out. Each still gets its own answer: a running job as it is when the wait runs
    out, a finished one at once, a 404 for an unknown id."""
    api, server = api
    jobs = jobs_redis(load_settings({"REDIS_URL": server.url}))
    store = JobStore(jobs, 3600)
    running = [store.create("sleep", {}).id for _ in range(32)]
    done = [_complete(jobs, {"n": n}) for n in range(8)]
    unknown = [new_job_id() for _ in range(8)]
    asked = running + done + unknown
    for job_id in done[:4]:  # warm each process's connections and subscriber
        requests.get(f"{api.url}/status/{job_id}?wait=1", timeout=10)
    jobs.config_resetstat()
    jobs.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # the first reads pile up behind each process's first

    def one(job_id):
        response = requests.get(f"{api.url}/status/{job_id}?wait=1", timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(len(asked)) as pool:
        answers = dict(zip(asked, pool.map(one, asked)))
    for job_id in running:
        status, body = answers[job_id]
        assert status == 200 and body["status"] == JobStatus.SUBMITTED.value and body["job_id"] == job_id, body
    for n, job_id in enumerate(done):
        status, body = answers[job_id]
        assert status == 200 and body["status"] == JobStatus.COMPLETE.value and body["result"] == {"n": n}, body
    for job_id in unknown:
        status, body = answers[job_id]
        assert status == 404 and body["error"] == "job_not_found" and body["job_id"] == job_id, body
    gets, mgets = _calls(jobs, "get"), _calls(jobs, "mget")
    print(f"{len(asked)} long polls: {gets} GET, {mgets} MGET (the safety sweep's included)")
    assert gets == 0, gets  # one each before
    assert mgets <= (len(asked) + len(running)) // 4, mgets  # first reads, and the running jobs' last
