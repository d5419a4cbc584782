"""Redis answering every command with an error for a while (BUSY: a script past busy-reply-threshold;
MASTERDOWN: a replica without its primary, replica-serve-stale-data no; LOADING: just restarted,
reading its data back) or refusing the service's ACL user a command (NOPERM), on a real
redis-server: JSON 503s naming the cause, never a 500, and the jobs stored before are all there once
Redis answers again. They used to reach the API as a plain ResponseError and be answered 500
internal_error (LOADING: a submit 504, "may have been stored")."""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import pytest
import redis

from devstack.procs import free_port, wait_until
from devstack.redis_server import find_redis_server
from jobqueue_api import create_app

from .support import make_settings

BUSY_LOOP = "local i = 0 while true do i = i + 1 end"


def wait_for_error(client: redis.Redis, kind: type[Exception], timeout: float = 10.0) -> Exception:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.ping()
        except kind as exc:
            return exc
        time.sleep(0.02)
    raise AssertionError(f"Redis never answered {kind.__name__}")


def assert_503(response, code: str, cause: str, *words: str) -> dict:
    body = response.get_json()
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True))
    assert body["error"] == code and body["cause"] == cause, body
    assert response.headers["Retry-After"]
    for word in words:
        assert word in body["message"], body
    return body


def test_busy_script_is_a_503_naming_it_then_back_to_normal(fresh_redis):
    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    admin = fresh_redis.client()
    admin.config_set("busy-reply-threshold", 100)
    looping = threading.Thread(target=lambda: _run_until_killed(fresh_redis.client()), daemon=True)
    looping.start()
    try:
        wait_for_error(admin, redis.exceptions.ResponseError)
        assert_503(client.post("/submit", json={"operation": "sleep"}), "redis_busy", "BUSY", "BUSY", "script")
        assert_503(client.get(f"/status/{job_id}"), "redis_busy", "BUSY")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["redis"] is False
        detail = client.get("/healthz?detail=1")
        assert detail.status_code == 200 and detail.get_json()["redis"] is False
    finally:
        admin.script_kill()
        looping.join(10)
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"
    assert client.post("/submit", json={"operation": "sleep"}).status_code == 202


def _run_until_killed(client: redis.Redis) -> None:
    try:
        client.eval(BUSY_LOOP, 0)
    except redis.exceptions.ResponseError:
        pass  # "Script killed by user with SCRIPT KILL"


def test_replica_without_its_primary_is_a_503_naming_it_then_back_to_normal(fresh_redis):
    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    admin = fresh_redis.client()
    admin.config_set("replica-serve-stale-data", "no")
    admin.replicaof("127.0.0.1", free_port())  # nothing listens there: the link stays down
    try:
        wait_for_error(admin, redis.exceptions.MasterDownError)
        assert_503(client.get(f"/status/{job_id}"), "redis_master_down", "MASTERDOWN", "MASTERDOWN", "primary")
        assert_503(client.get("/jobs"), "redis_master_down", "MASTERDOWN")
        # a write meets READONLY first: the replica's answer to writes, unchanged
        submit = client.post("/submit", json={"operation": "sleep"})
        assert submit.status_code == 503 and submit.get_json()["error"] == "redis_unavailable"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz?detail=1").get_json()["redis"] is False
    finally:
        admin.replicaof("NO", "ONE")
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"
    assert client.post("/submit", json={"operation": "sleep"}).status_code == 202


def test_an_acl_refusal_is_a_503_naming_the_command_only(fresh_redis):
    admin = fresh_redis.client()
    default_user = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = default_user.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    admin.acl_setuser("jq-user", enabled=True, passwords=["+secret-pw"], keys=["*"], channels=["*"], commands=["+@all"])
    admin.execute_command("ACL", "SETUSER", "jq-user", "-multi", "-rpush")
    url = f"redis://jq-user:secret-pw@127.0.0.1:{fresh_redis.port}"
    client = create_app(make_settings(url), load_data=False).test_client()
    submitted = assert_503(
        client.post("/submit", json={"operation": "sleep"}), "redis_permission_denied", "NOPERM", "'multi'", "ACL"
    )
    admin.execute_command("ACL", "SETUSER", "jq-user", "+rpush", "-mget")
    status = assert_503(client.get(f"/status/{job_id}"), "redis_permission_denied", "NOPERM", "'mget'")
    for body in (submitted, status):
        assert "jq-user" not in str(body) and "secret" not in str(body), body
    admin.execute_command("ACL", "SETUSER", "jq-user", "+multi", "+mget")  # the deployment fixed
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"
    assert client.post("/submit", json={"operation": "sleep"}).status_code == 202


def test_a_submit_refused_multi_alone_stands(fresh_redis, caplog):
    """A user without MULTI (and nothing else refused): Redis runs the submit's commands one by one,
    and they all apply. The submit answered 503 all the same, so the client sent it again and the
    job ran twice; now it answers 202, once, and the API logs an error saying to allow MULTI."""
    admin = fresh_redis.client()
    admin.acl_setuser("jq-user", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    admin.execute_command("ACL", "SETUSER", "jq-user", "-multi")
    client = create_app(
        make_settings(f"redis://jq-user:pw@127.0.0.1:{fresh_redis.port}"), load_data=False
    ).test_client()
    answers = [client.post("/submit", json={"operation": "sleep"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202], [a.get_json() for a in answers]
    ids = [a.get_json()["job_id"] for a in answers]
    assert fresh_redis.client(db=1).lrange("hotqueue:jobs", 0, -1) == ids  # queued, once each
    assert [client.get(f"/status/{i}").get_json()["status"] for i in ids] == ["submitted", "submitted"]
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "MULTI" in r.getMessage()]
    assert len(said) == 1, said  # once a minute, not once a submit


def test_a_keyed_submit_or_a_cancel_refused_a_command_writes_nothing(fresh_redis, monkeypatch):
    """The API's scripts that write (a keyed submit, a cancel) are not undone by Redis when a later
    call of theirs is refused: a keyed submit refused ZADD kept its key and its document (neither
    indexed nor queued: no sweeper finds it; the key then replays it for ever), a cancel refused
    SREM had taken the id out of the queue with the document still 'submitted'. The API checks
    its scripts' commands first (jobqueue.aclcheck.Guard): a 503 naming the command, nothing written."""
    from jobqueue import aclcheck, keys
    from jobqueue.delivery import Delivery

    monkeypatch.setattr(aclcheck, "GUARD_REFUSED_SECONDS", 0.1)  # the fix seen at once
    admin = fresh_redis.client()
    queued = fresh_redis.client(db=1)
    default_user = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = default_user.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    admin.acl_setuser("jq-user", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    admin.execute_command("ACL", "SETUSER", "jq-user", "-zadd", "-srem")
    settings = make_settings(f"redis://jq-user:pw@127.0.0.1:{fresh_redis.port}")

    # the hole, without the check: the keyed submit's script stops part-way, its first writes kept
    raw = Delivery(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings)
    job = raw.new_job("sleep", {})
    try:
        raw._keyed_script(**raw.keyed_call(job, keys.idempotency("", "hole"), "fp", 60))
    except redis.exceptions.ResponseError:
        pass
    assert admin.exists(keys.idempotency("", "hole"), keys.job(job.id)) == 2 and job.id not in queued.lrange(
        "hotqueue:jobs", 0, -1
    )
    admin.delete(keys.idempotency("", "hole"), keys.job(job.id))

    client = create_app(settings, load_data=False).test_client()
    keyed = client.post("/submit", json={"operation": "sleep"}, headers={"Idempotency-Key": "k-1"})
    assert_503(keyed, "redis_permission_denied", "NOPERM", "'zadd'")
    assert admin.keys(keys.IDEMPOTENCY_PREFIX + "*") == [] and admin.keys(keys.JOB_PREFIX + "*") == [f"job:{job_id}"]
    assert_503(client.delete(f"/jobs/{job_id}"), "redis_permission_denied", "NOPERM", "'zadd'")
    assert queued.lrange("hotqueue:jobs", 0, -1) == [job_id]  # still queued, still submitted
    assert default_user.get(f"/status/{job_id}").get_json()["status"] == "submitted"

    admin.execute_command("ACL", "SETUSER", "jq-user", "+zadd", "+srem")  # the deployment fixed
    time.sleep(0.2)
    keyed = client.post("/submit", json={"operation": "sleep"}, headers={"Idempotency-Key": "k-1"})
    assert keyed.status_code == 202, keyed.get_json()
    assert client.delete(f"/jobs/{job_id}").get_json()["cancelled"] is True
    assert queued.lrange("hotqueue:jobs", 0, -1) == [keyed.get_json()["job_id"]]


def test_an_acl_refusal_is_not_reported_as_redis_unreachable(fresh_redis):
    """A user refused a command the queue reads need (here EVALSHA): ``/healthz?detail=1`` said
    ``redis: false`` and ``/help`` "Redis unreachable" while Redis answered and ``/readyz`` was 200,
    sending an operator to look for a network fault. Now both say Redis answers and refuses the
    service's user a command (NOPERM), without naming it to an anonymous caller: the logs do."""
    admin = fresh_redis.client()
    admin.acl_setuser("jq-user", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    admin.execute_command("ACL", "SETUSER", "jq-user", "-evalsha", "-eval")
    client = create_app(
        make_settings(f"redis://jq-user:pw@127.0.0.1:{fresh_redis.port}"), load_data=False
    ).test_client()
    detail = client.get("/healthz?detail=1")
    assert detail.status_code == 200, detail.get_data(as_text=True)
    body = detail.get_json()
    assert body["redis"] is True and body["queue"] is None, body
    assert "NOPERM" in body["queue_error"] and "evalsha" not in body["queue_error"].lower(), body
    help_text = client.get("/help").get_data(as_text=True)
    assert "unreachable" not in help_text and "NOPERM" in help_text, help_text[:600]
    assert client.get("/readyz").get_json()["redis"] is True  # (no data loaded here: 503 for that)
    admin.execute_command("ACL", "SETUSER", "jq-user", "+evalsha", "+eval")  # the deployment fixed
    fixed = client.get("/healthz?detail=1").get_json()
    assert fixed["redis"] is True and fixed["queue"]["waiting"] == 0 and "queue_error" not in fixed, fixed


def test_a_redis_with_one_db_is_a_503_naming_it_and_not_ready(tmp_path, caplog):
    """Many managed Redis have one db (``databases 1``), and the queue db (REDIS_QUEUE_DB, 1 by
    default) is not there: Redis refuses its SELECT, as a connection is set up or inside a script.
    Before, /readyz said ready while every submit and /queue answered 500, and each worker turn
    logged a traceback. Now: 503 redis_misconfigured naming it, /readyz 503, one error line a turn.

    And a refused submit stored nothing: a SELECT Redis refuses inside MULTI/EXEC does not abort the
    transaction, so a plain submit stored its job, pushed its id into db 0's list and answered 503
    (which a client takes for "not stored, submit again"); a keyed submit stored its document and
    key; once the dbs were fixed each ran, beside the client's second submit. The API's connection
    now tries the queue db as it connects, before anything is sent."""
    from jobqueue_worker.worker import Worker
    from tests.support.harness import FakeData, operations

    port = free_port()
    server = _start_redis(tmp_path, port, "--databases", "1")
    try:
        url = f"redis://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 10, "redis-server up")
        client = create_app(make_settings(url), load_data=False).test_client()
        for answer in (
            client.post("/submit", json={"operation": "sleep"}),
            client.post("/submit", json={"operation": "sleep"}, headers={"Idempotency-Key": "k-one-db"}),
            client.post("/submit?wait=1", json={"operation": "sleep"}),
            client.post("/jobs", json={"operation": "sleep"}),
            client.get("/queue"),
        ):
            body = assert_503(answer, "redis_misconfigured", "SETUP", "DB index is out of range", "REDIS_QUEUE_DB")
            assert "script" not in body["message"], body
        stored = redis.Redis.from_url(url).keys("*")
        assert not [k for k in stored if k.split(b":")[0] in (b"job", b"hotqueue", b"idempotency", b"jobs")], stored
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["redis"] is False

        settings = make_settings(url).replace(job_lease_seconds=1.5)
        worker = Worker(settings, operations(), FakeData(), worker_id="w-one-db")
        caplog.set_level(logging.INFO, logger="jobqueue.worker")
        thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        try:
            wait_until(lambda: _said(caplog, "redis refuses this worker's settings"), 10, "the worker's error")
        finally:
            worker.request_stop()
            thread.join(10)
        said = [r for r in caplog.records if "redis refuses this worker's settings" in r.getMessage()]
        assert said[0].levelno == logging.ERROR and "DB index is out of range" in said[0].error
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    finally:
        server.kill()
        server.wait(10)


def _start_redis(tmp_path, port: int, *options: str) -> subprocess.Popen:
    """A redis-server of the test's own on ``port`` (its files in ``tmp_path``), with ``options``."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path), *options]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.exceptions.ConnectionError:
        return False


def _loading(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.exceptions.ConnectionError:  # not listening yet
        return False
    raise AssertionError("Redis answered before it was seen loading")


def _said(caplog, words: str) -> bool:
    return any(words in r.getMessage() for r in caplog.records)


def test_a_redis_loading_its_data_is_a_503_that_stored_nothing(tmp_path):
    """A Redis just restarted answers LOADING until its dataset is read back (seconds to minutes for
    a big one). redis-py raises that reply as a connection error, and a submit took it for a lost
    answer: 504 "the job may have been stored, check GET /status" after a check that met LOADING too,
    though Redis had refused the transaction as it queued it. Now: 503 ``redis_loading``, and nothing
    was stored. The restart here really loads: a small RDB read back slowly (``key-load-delay``)."""
    from jobqueue import keys

    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    server = _start_redis(tmp_path, port)
    try:
        wait_until(lambda: _answers(url), 10, "redis-server up")
        client = create_app(make_settings(url), load_data=False).test_client()
        before = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
        filler = redis.Redis.from_url(url, db=5)  # what makes the load take seconds, in a db of its own
        for start in range(0, 40_000, 1_000):
            filler.mset({f"fill:{i}": "x" for i in range(start, start + 1_000)})
        filler.save()
        filler.shutdown(nosave=True)
        server.wait(10)
        # ~0.15 ms a key: about 6 s of LOADING, answering between keys every 1 KiB read (the least it takes)
        server = _start_redis(
            tmp_path, port, "--key-load-delay", "150", "--loading-process-events-interval-bytes", "1024"
        )
        admin = redis.Redis.from_url(url)
        wait_until(lambda: _loading(admin), 10, "redis-server loading")
        submitted = client.post("/submit", json={"operation": "sleep"})
        keyed = client.post("/submit", json={"operation": "sleep"}, headers={"Idempotency-Key": "loading-1"})
        status = client.get(f"/status/{before}")
        with pytest.raises(redis.exceptions.BusyLoadingError):
            admin.ping()  # still loading: the answers above met LOADING, not a Redis that had finished
        for answer in (submitted, keyed, status):
            body = assert_503(answer, "redis_loading", "LOADING", "loading its dataset")
            assert "job_id" not in body, body
        wait_until(lambda: _answers(url), 30, "the load to end")
        assert client.get(f"/status/{before}").get_json()["status"] == "submitted"
        assert admin.zrange(keys.JOB_INDEX, 0, -1) == [before.encode()], "a refused submit was stored"
        assert redis.Redis.from_url(url, db=1).lrange("hotqueue:jobs", 0, -1) == [before.encode()]
    finally:
        server.kill()
        server.wait(10)
