"""Concurrent submits of one API process share one script call (``jobqueue_api.batching``), and a
202 still means the job is stored and queued.

The batcher is exercised three ways: with threads against the real Redis (coalescing, errors
reaching every caller, the lead never stuck), with greenlets under gevent's patching in a child
process (a waiter killed while it waits, even the one handed the lead), and through the real
``jobqueue-api`` while Redis holds every write back (``CLIENT PAUSE``), so that the submits of each
process pile up behind the first one's call: far fewer script calls than jobs, and every 202 is a
stored, indexed, queued job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from devstack.paths import REPO_ROOT
from devstack.procs import wait_until
from jobqueue import keys
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.delivery import Delivery
from jobqueue.jobs import JobStatus, JobStore
from jobqueue.settings import load_settings
from jobqueue_api.batching import SubmitBatcher, UnderWay

from .support import make_settings, redis_and_api, spawn


def _stored_and_queued(jobs: redis.Redis, queue: redis.Redis, job_ids: list[str]) -> None:
    store = JobStore(jobs, 3600)
    queued = set(queue.lrange(keys.queue("jobs"), 0, -1))
    for job_id in job_ids:
        job = store.get(job_id)
        assert job is not None and job.status is JobStatus.SUBMITTED, job_id
        assert job_id in queued, job_id
        assert jobs.zscore(keys.JOB_INDEX, job_id) is not None, job_id


def test_concurrent_submits_share_one_call_and_each_returns_once_stored(redis_url):
    settings = make_settings(redis_url)
    jobs, queue = jobs_redis(settings), queue_redis(settings)
    delivery = Delivery(jobs, settings)
    first_call = threading.Event()
    release = threading.Event()
    batches: list[int] = []
    order: list[str] = []

    def store_many(batch):
        batches.append(len(batch))
        order.extend(job.id for job in batch)
        if len(batches) == 1:  # hold the first call until everyone else is waiting behind it
            first_call.set()
            assert release.wait(10)
        delivery.store(batch)

    batcher = SubmitBatcher(store_many)
    seen_stored: dict[str, bool] = {}

    def one(_):
        job = delivery.new_job("sleep", {"seconds": 0})
        batcher.submit(job)
        seen_stored[job.id] = jobs.exists(keys.job(job.id)) == 1  # stored by the time submit returned
        return job.id

    first = spawn(one, 0)
    assert first_call.wait(10)
    rest = [spawn(one, i) for i in range(1, 40)]
    wait_until(lambda: batcher.waiting == 39, 60, "39 submits queued behind the first call")
    release.set()
    ids = [first.result(10)] + [f.result(10) for f in rest]

    assert batches == [1, 39], batches  # the first alone, then everyone who waited, in one call
    assert batcher.calls == 2
    assert all(seen_stored.values()) and len(seen_stored) == 40
    _stored_and_queued(jobs, queue, ids)
    assert queue.lrange(keys.queue("jobs"), 0, -1) == order  # queued in the order they arrived


def test_batches_are_capped(redis_url):
    settings = make_settings(redis_url)
    delivery = Delivery(jobs_redis(settings), settings)
    gate = threading.Event()
    sizes: list[int] = []

    def store_many(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            assert gate.wait(10)
        delivery.store(batch)

    batcher = SubmitBatcher(store_many, max_batch=8)
    futures = [spawn(batcher.submit, delivery.new_job("sleep", {}))]
    wait_until(lambda: sizes == [1], 60, "the first call under way")
    futures += [spawn(batcher.submit, delivery.new_job("sleep", {})) for _ in range(20)]
    wait_until(lambda: batcher.waiting == 20, 60, "20 submits queued")
    gate.set()
    for f in futures:
        f.result(10)
    assert sizes == [1, 8, 8, 4]


def test_an_error_reaches_every_caller_of_its_call_and_the_next_submit_works(redis_url):
    settings = make_settings(redis_url)
    jobs = jobs_redis(settings)
    delivery = Delivery(jobs, settings)
    entered, release = threading.Event(), threading.Event()
    calls = {"n": 0}

    def store_many(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            entered.set()
            assert release.wait(10)
            raise redis.exceptions.ConnectionError("Redis went away")
        if calls["n"] == 2:
            raise redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        delivery.store(batch)

    batcher = SubmitBatcher(store_many)
    first = spawn(batcher.submit, delivery.new_job("sleep", {}))
    assert entered.wait(10)
    rest = [spawn(batcher.submit, delivery.new_job("sleep", {})) for _ in range(5)]
    wait_until(lambda: batcher.waiting == 5, 60, "5 submits queued")
    release.set()
    with pytest.raises(redis.exceptions.ConnectionError):
        first.result(10)
    for f in rest:  # the second call carried all five: each caller sees its refusal
        with pytest.raises(redis.exceptions.ResponseError, match="OOM"):
            f.result(10)
    job = delivery.new_job("sleep", {})
    batcher.submit(job)  # the lead was handed back: a later submit runs its own call
    assert jobs.exists(keys.job(job.id))
    assert calls["n"] == 3


def test_a_waiter_interrupted_as_it_is_handed_the_lead_passes_it_on(redis_url):
    settings = make_settings(redis_url)
    delivery = Delivery(jobs_redis(settings), settings)
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []
    made = []

    class InterruptedFirst(threading.Event):
        """The first waiter's wait ends in an exception right after it is woken (as a greenlet
        killed at that moment): it was handed the lead, and never takes it."""

        def __init__(self):
            super().__init__()
            made.append(self)

        def wait(self, timeout=None):
            woken = super().wait(timeout)
            if self is made[0]:
                raise KeyboardInterrupt
            return woken

    def store_many(batch):
        calls.append([job.operation for job in batch])
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
        delivery.store(batch)

    class Batcher(SubmitBatcher):
        _event = InterruptedFirst

    batcher = Batcher(store_many)
    first = spawn(batcher.submit, delivery.new_job("j0", {}))
    assert entered.wait(10)
    head = spawn(batcher.submit, delivery.new_job("j1", {}))
    wait_until(lambda: batcher.waiting == 1, 60, "1 submits queued")
    others = [spawn(batcher.submit, delivery.new_job(f"j{i}", {})) for i in (2, 3)]
    wait_until(lambda: batcher.waiting == 3, 60, "3 submits queued")
    release.set()
    first.result(10)
    with pytest.raises(KeyboardInterrupt):
        head.result(10)
    for f in others:
        f.result(10)  # a lead left with the interrupted waiter would leave these waiting for good
    assert calls == [["j0"], ["j2", "j3"]]
    batcher.submit(delivery.new_job("j4", {}))
    assert calls[-1] == ["j4"]


KILLED_WAITERS = r"""
from gevent import monkey
monkey.patch_all()
import gevent, json, sys
from jobqueue_api.batching import SubmitBatcher, UnderWay

stored, gate = [], gevent.event.Event()
def store_many(batch):
    if not stored:
        gate.wait()
    stored.append([job for job in batch])

b = SubmitBatcher(store_many)
lead = gevent.spawn(b.submit, "j0")
gevent.sleep(0.01)
waiters = [gevent.spawn(b.submit, f"j{i}") for i in range(1, 6)]
gevent.sleep(0.01)
waiters[0].kill()              # the head waiter: the one the lead would be handed to
waiters[2].kill()
gate.set()
gevent.joinall([lead] + waiters, timeout=5)
late = gevent.spawn(b.submit, "j6")
late.join(timeout=5)
print(json.dumps({"calls": stored, "late_done": late.successful(), "busy": b._busy}))
"""


def test_a_waiter_killed_while_it_waits_never_sticks_the_lead():
    """Under gevent a request's greenlet can be killed (worker shutdown); if it was the one due to
    take the lead, the lead passes on, and a killed waiter's job is not stored for nobody."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "services" / "api"), str(REPO_ROOT / "shared" / "core")]),
    }
    out = subprocess.run([sys.executable, "-c", KILLED_WAITERS], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["calls"] == [["j0"], ["j2", "j4", "j5"], ["j6"]], result
    assert result["late_done"] and result["busy"] is False


GATHERED = r"""
from gevent import monkey
monkey.patch_all()
import gevent, json
from jobqueue_api.batching import SubmitBatcher, UnderWay

calls = []
b = SubmitBatcher(lambda batch: calls.append(list(batch)))
gevent.joinall([gevent.spawn(b.submit, f"j{i}") for i in range(10)], timeout=5)
print(json.dumps({"calls": calls}))
"""


def _under_gevent(script: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "services" / "api"), str(REPO_ROOT / "shared" / "core")]),
    }
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_submits_already_under_way_join_the_call_about_to_go():
    """Ten requests running in one process at once: the first to reach the batcher yields once
    before its call, so the other nine are in it too (without the yield: a call of 1, then 9)."""
    assert _under_gevent(GATHERED)["calls"] == [[f"j{i}" for i in range(10)]]


def test_a_caller_killed_while_it_gathers_passes_the_lead_on(redis_url, monkeypatch):
    """The caller about to make the call is interrupted in its yield (as a greenlet killed there):
    the lead goes to the next waiter, whose call carries everyone else; none is left waiting."""
    import types

    from jobqueue_api import batching

    calls: list[list[str]] = []
    batcher = SubmitBatcher(lambda batch: calls.append(list(batch)))
    yields = {"n": 0}

    def sleep(_seconds):
        yields["n"] += 1
        if yields["n"] == 1:  # the first caller: let two more queue behind it, then die
            wait_until(lambda: batcher.waiting == 3, 60, "two submits queued behind the first")
            raise KeyboardInterrupt

    monkeypatch.setattr(batching, "time", types.SimpleNamespace(sleep=sleep))
    first = spawn(batcher.submit, "j0")
    wait_until(lambda: yields["n"] == 1, 60, "the first caller yielding")
    others = [spawn(batcher.submit, job) for job in ("j1", "j2")]
    with pytest.raises(KeyboardInterrupt):
        first.result(10)
    for f in others:
        f.result(10)  # a lead left with the interrupted caller would leave these waiting for good
    assert [sorted(c) for c in calls] == [["j1", "j2"]]
    batcher.submit("j3")
    assert calls[-1] == ["j3"] and batcher.waiting == 0


def test_the_lead_yields_only_when_another_request_is_under_way(monkeypatch):
    """A lone request's call goes at once (no turn of the event loop for company that cannot
    come); with another request under way, the lead yields first, as before."""
    import types

    from jobqueue_api import batching

    yields: list[float] = []
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(sleep=yields.append))
    under_way = UnderWay()
    batcher = SubmitBatcher(lambda batch: None, company=under_way.company)
    batcher.submit("unknown")  # nothing counted yet (no app counted): assume company
    assert yields == [0]
    seen = []

    def app(environ, start_response):
        batcher.submit(environ["job"])
        seen.append(len(yields))
        return [b""]

    counted = under_way.counted(app)
    counted({"job": "alone"}, None).close()
    assert seen == [1]  # no yield for a lone request
    first = counted({"job": "a"}, None)  # answered, its body not closed yet: still under way
    counted({"job": "b"}, None).close()
    assert seen == [1, 1, 2]  # "b" had "a" under way: it yielded
    first.close()
    counted({"job": "alone again"}, None).close()
    assert seen[-1] == 2 and under_way.count == 0


def test_a_request_is_under_way_until_its_body_is_closed_or_it_fails():
    under_way = UnderWay()
    assert under_way.company()  # nothing counted: unknown, so yes

    class FileWrapper:
        def __init__(self, filelike):
            self.filelike = filelike

    def app(environ, start_response):
        if environ.get("fail"):
            raise RuntimeError("boom")
        return FileWrapper(None) if environ.get("file") else [b"x"]

    counted = under_way.counted(app)
    body = counted({}, None)
    assert under_way.count == 1 and not under_way.company()
    other = counted({}, None)
    assert under_way.count == 2 and under_way.company()
    body.close()
    body.close()  # a second close counts nothing
    other.close()
    assert under_way.count == 0
    with pytest.raises(RuntimeError):
        counted({"fail": True}, None)
    assert under_way.count == 0
    sent = counted({"file": True, "wsgi.file_wrapper": FileWrapper}, None)
    assert isinstance(sent, FileWrapper) and under_way.count == 0  # left as is, so sendfile still applies


# --- through the real API ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with redis_and_api(tmp_path_factory.mktemp("batch")) as (server, api):
        yield api.url, server


def test_submits_held_up_by_redis_go_in_few_calls_and_every_202_is_queued(api):
    base, server = api
    settings = load_settings({"REDIS_URL": server.url})
    jobs, queue = jobs_redis(settings), queue_redis(settings)
    submits = 48
    jobs.config_resetstat()
    jobs.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # scripts wait; the submits pile up

    def one(_):
        response = requests.post(base + "/submit", json={"operation": "sleep", "params": {"seconds": 0}}, timeout=30)
        return response.status_code, response.json()

    with ThreadPoolExecutor(submits) as pool:
        answers = list(pool.map(one, range(submits)))
    assert all(status == 202 for status, _ in answers), answers
    ids = [body["job_id"] for _, body in answers]
    _stored_and_queued(jobs, queue, ids)
    calls = int(jobs.info("commandstats")["cmdstat_exec"]["calls"])  # one MULTI/EXEC transaction a call
    print(f"{submits} submits in {calls} calls")
    assert calls <= submits // 2, calls  # typically 4: per process, the first alone, then the rest


def test_a_mixed_batch_lands_in_each_index_and_lane(redis_url):
    """One call for jobs of several operations and both lanes: each id in the index, its
    operation's index and the index of jobs not yet final, and queued in its own lane, in order."""
    from jobqueue.lanes import DEFAULT, PLOTS

    settings = make_settings(redis_url)
    jobs, queue = jobs_redis(settings), queue_redis(settings)
    delivery = Delivery(jobs, settings)
    batch = [
        delivery.new_job(op, {}, lane)
        for op, lane in (
            ("sleep", DEFAULT),
            ("plot_a", PLOTS),
            ("sleep", DEFAULT),
            ("count_rows", DEFAULT),
            ("plot_a", PLOTS),
        )
    ]
    delivery.store(batch)
    by_lane = {DEFAULT: [j.id for j in batch if j.lane == DEFAULT], PLOTS: [j.id for j in batch if j.lane == PLOTS]}
    assert queue.lrange(keys.queue("jobs"), 0, -1) == by_lane[DEFAULT]
    assert queue.lrange(keys.queue(keys.lane_queue_name("jobs", PLOTS)), 0, -1) == by_lane[PLOTS]
    for job in batch:
        assert JobStore(jobs, 3600).get(job.id).operation == job.operation
        assert jobs.zscore(keys.JOB_INDEX, job.id) == job.submitted_at
        assert jobs.zscore(keys.ACTIVE_INDEX, job.id) == job.submitted_at
        assert jobs.zscore(keys.operation_index(job.operation), job.id) == job.submitted_at
    assert jobs.zcard(keys.operation_index("sleep")) == 2


LEAD_KILLED = r"""
from gevent import monkey
monkey.patch_all()
import gevent, json, sys
import redis
from jobqueue_api.batching import GroupCall

r = redis.Redis.from_url(sys.argv[1])
calls = []
def run_many(batch):
    calls.append(list(batch))
    if len(calls) == 1:
        r.blpop("leftovers:never", 30)   # the lead's real Redis call, killed while Redis holds it
    return [f"done {item}" for item in batch]

g = GroupCall(run_many)
def caller(item):
    try:
        return ["ok", g.call(item)]
    except Exception as exc:             # what a request's view sees (a BaseException would end it)
        return ["error", type(exc).__name__, isinstance(exc, redis.exceptions.ConnectionError)]

lead = gevent.spawn(caller, "j0")
waiters = [gevent.spawn(caller, f"j{i}") for i in range(1, 4)]   # join the lead's call (its yield)
gevent.sleep(0.05)
late = [gevent.spawn(caller, f"j{i}") for i in range(4, 6)]      # queue behind that call
gevent.sleep(0.05)
lead.kill()                             # as gunicorn's graceful-shutdown timeout kills a request
gevent.joinall(waiters + late, timeout=10)
answers = [w.value if w.ready() else "still waiting" for w in waiters + late]
after = caller("j6")
print(json.dumps({"calls": calls, "answers": [a if isinstance(a, (list, str)) else repr(a) for a in answers],
                  "after": after, "busy": g._busy}))
"""


def test_a_lead_killed_during_its_redis_call_leaves_no_caller_without_an_answer(redis_url):
    """The lead greenlet is killed (gunicorn's graceful-shutdown timeout) while its call waits on a
    real Redis: the callers whose items were in that call get an error the API answers with a 503
    (a ConnectionError: their items may or may not have been applied), not the lead's GreenletExit,
    which ended their requests without a response; callers queued behind get the next call."""
    script = LEAD_KILLED.replace("sys.argv[1]", repr(redis_url))
    result = _under_gevent(script)
    first = result["calls"][0]
    assert first == ["j0", "j1", "j2", "j3"], result
    in_first = set(first)
    for item, answer in zip([f"j{i}" for i in range(1, 6)], result["answers"]):
        if item in in_first:
            assert answer == ["error", "LeadLost", True], result
        else:
            assert answer == ["ok", f"done {item}"], result
    assert result["after"] == ["ok", "done j6"] and result["busy"] is False, result


def test_the_api_answers_the_batch_of_an_interrupted_lead_with_a_504_naming_the_job(app, monkeypatch):
    """Through the app: two submits in one call, whose lead is interrupted in it. The other gets
    the JSON 504 of a submit that may be stored (here it is), with its job's id and Location and no
    Retry-After, not a 500, nor the 503 that tells a client to submit again."""
    import types

    from jobqueue_api import batching

    state = app.extensions["jobqueue"]
    real = state.submits._run_many

    def store_many(batch):
        if len(batch) > 1:
            real(batch)
            raise KeyboardInterrupt  # stopped as the answer arrives: stored, but nobody was told
        return real(batch)

    monkeypatch.setattr(state.submits, "_run_many", store_many)
    gathered = {"n": 0}

    def sleep(_seconds):  # the lead's yield: until the second submit is queued behind it
        gathered["n"] += 1
        if gathered["n"] == 1:
            wait_until(lambda: state.submits.waiting == 2, 60, "the second submit queued")

    monkeypatch.setattr(batching, "time", types.SimpleNamespace(sleep=sleep))
    body = {"operation": "sleep", "params": {}}
    lead = spawn(lambda: app.test_client().post("/submit?x=1", json=body))
    wait_until(lambda: gathered["n"] == 1, 60, "the lead yielding")
    other = spawn(lambda: app.test_client().post("/submit?x=1", json=body)).result(10)
    with pytest.raises(KeyboardInterrupt):
        lead.result(10)
    assert other.status_code == 504 and other.get_json()["error"] == "redis_timeout", other.data
    job_id = other.get_json()["job_id"]
    assert other.headers["Location"] == f"/status/{job_id}" and "Retry-After" not in other.headers
    assert app.test_client().get(f"/status/{job_id}").status_code == 200  # it was stored
