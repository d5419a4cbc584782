"""The project's client sends an ``Idempotency-Key`` with the submits it resolves (``Client.run``,
``Client.submit_and_wait``, ``jobqueue submit --wait``) and, when the answer is lost (a 504 while
Redis hangs, a connection dropped or timed out after the request went out), sends the same request
again with the same key: the API answers the job the first attempt stored, or stores it then, so
exactly one job runs, whatever order Redis ran the attempts in. The real ``jobqueue-api``
(gunicorn), a real redis-server stopped with SIGSTOP, and a proxy that loses or holds answers.
Before, the client polled the job's status and took two 404s a second apart for "not stored"
(a margin, not a proof: test_hung_redis.py keeps that path for an API without keys)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from devstack.api_server import api_server
from devstack.paths import BIN
from devstack.procs import stop, wait_until
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue import keys
from jobqueue.client import Client, StoredUnknown
from jobqueue.jobs import Job

from tests.support.lossy_proxy import LossyProxy

from .support import spawn as in_thread
from .test_hung_redis import SLACK, _worker

pytestmark = pytest.mark.slow

# REDIS_TIMEOUT_SECONDS of the APIs that meet a hung Redis here: each 504 comes this long after its
# submit. The default (5 s) is test_hung_redis.py's subject; the re-sends checked here take the same
# path at any bound, and the 504s waited for one after another cost 2 s more each at 5 s
BOUND = 3.0
RUN_TIMEOUT = 8  # the call that ends in StoredUnknown: past one 504 and its re-send, not a third


class _Noting(Client):
    """The project's client, noting each 504 it gets; the status-poll resolution must not be used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unsure: list[StoredUnknown] = []

    def _submit_waiting(self, body, wait, timeout, on_unsure=None):
        def note(unsure):
            self.unsure.append(unsure)
            if on_unsure is not None:
                on_unsure(unsure)

        return super()._submit_waiting(body, wait, timeout, note)

    def _resolve(self, unsure, deadline):
        raise AssertionError("an API that honours keys needs no status poll")


def _stored(direct, seconds: float) -> list[str]:
    ids = direct.zrange(keys.JOB_INDEX, 0, -1)
    docs = [Job.from_json(d) for d in direct.mget([keys.job(i) for i in ids]) if d] if ids else []
    return [job.id for job in docs if job.params.get("seconds") == seconds]


@pytest.fixture
def redis_alone(tmp_path):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


def test_run_submit_and_wait_and_the_cli_resend_with_their_key_after_a_504(tmp_path, redis_alone):
    server = redis_alone
    with api_server(server.url, tmp_path / "api", processes=1, REDIS_TIMEOUT_SECONDS=str(BOUND)) as api:
        worker = _worker(api, tmp_path)
        try:
            client = _Noting(api.url, timeout=30)
            assert client.run("sleep", seconds=0.01, timeout=30) == {"slept": 0.01}  # warm, as a user's is

            # Redis hangs with the submits in its buffers; each 504 echoes the key, the client sends
            # the request again (into the same hung Redis: more attempts waiting), and when Redis
            # resumes whichever attempt it runs first stores the job and every other answers it
            server.proc.send_signal(signal.SIGSTOP)
            try:
                ran = in_thread(lambda: client.run("sleep", seconds=0.021, timeout=60))
                waited = in_thread(lambda: client.submit_and_wait("sleep", seconds=0.022, wait=30))
                wait_until(lambda: len(client.unsure) >= 3, 3 * BOUND + 15, "504s and re-sends")
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert ran.result(90) == {"slept": 0.021}
            job = waited.result(90)
            assert job["status"] == "complete" and job["result"] == {"slept": 0.022}, job
            assert all(u.status == 504 and u.key is not None for u in client.unsure)
            assert len({u.key for u in client.unsure}) == 2  # one key per call, kept across its re-sends
            time.sleep(1.5)  # anything stored twice would be there by now
            direct = server.client()
            assert len(_stored(direct, 0.021)) == 1  # one job for however many attempts
            assert _stored(direct, 0.022) == [job["job_id"]]

            # Redis hangs, then restarts empty (killed): the attempts are gone with it, and so is any
            # key record; the CLI's re-send with the same key stores the job, once
            server.proc.send_signal(signal.SIGSTOP)
            cli = subprocess.Popen(
                [str(BIN / "jobqueue"), "submit", "sleep", "seconds=0.023", "--wait", "--timeout", "90"],
                env={**api.env, "JOBQUEUE_URL": api.url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines: list[str] = []
            in_thread(lambda: lines.extend(cli.stderr))
            wait_until(lambda: any("same Idempotency-Key" in line for line in lines), BOUND + 15, "the CLI's 504")
            server.kill()
            server.start()
            out, _ = cli.communicate(timeout=90)
            err = "".join(lines)
            assert cli.returncode == 0, (cli.returncode, out, err)
            assert json.loads(out) == {"slept": 0.023}, out
            assert len(_stored(server.client(), 0.023)) == 1, err

            # Redis stays hung past the call's timeout: StoredUnknown within it, naming each attempt
            # (at most one of them is stored, under the key), never a re-send that would end past it
            client.unsure.clear()
            server.proc.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoredUnknown) as raised:
                    client.run("sleep", seconds=0.024, timeout=RUN_TIMEOUT)
                took = time.monotonic() - started
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert took <= RUN_TIMEOUT + SLACK, took
            assert raised.value.key is not None and raised.value.job_ids == [u.job_id for u in client.unsure]
            wait_until(lambda: _stored(server.client(), 0.024), 60, "one attempt stored after Redis resumed")
            time.sleep(1.0)
            (stored,) = _stored(server.client(), 0.024)
            assert stored in raised.value.job_ids
        finally:
            if server.proc is not None:
                server.proc.send_signal(signal.SIGCONT)
            stop(worker.popen, 30)
        client.close()


def test_a_plain_cli_submit_resends_with_its_key_and_prints_the_stored_job(tmp_path, redis_alone):
    """``jobqueue submit`` without ``--wait`` while Redis hangs: each 504 echoes the CLI's key and
    the CLI sends the same request again; when Redis resumes exactly one job is stored (however many
    attempts Redis had read) and the id the CLI prints is that job's. Before, it printed the first
    attempt's id "to check" and exited 3."""
    server = redis_alone
    with api_server(server.url, tmp_path / "api", processes=1, REDIS_TIMEOUT_SECONDS=str(BOUND)) as api:
        assert Client(api.url).submit("sleep", seconds=0.01)  # a Redis that answers, as a user's does
        server.proc.send_signal(signal.SIGSTOP)
        try:
            cli = subprocess.Popen(
                [str(BIN / "jobqueue"), "submit", "sleep", "seconds=0.026", "--url", api.url],
                env={**api.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines: list[str] = []
            in_thread(lambda: lines.extend(cli.stderr))
            resent = lambda: sum("same Idempotency-Key" in line for line in lines) >= 2  # noqa: E731
            wait_until(resent, 2 * BOUND + 20, "the CLI's 504s, each sent again")
        finally:
            server.proc.send_signal(signal.SIGCONT)
        out, _ = cli.communicate(timeout=90)
        err = "".join(lines)
        assert cli.returncode == 0, (cli.returncode, out, err)
        printed = json.loads(out)
        assert printed["status"] == "submitted", out
        time.sleep(1.0)  # every attempt Redis had read has run by now
        assert _stored(server.client(), 0.026) == [printed["job_id"]], err


REQUEST_LINE = "POST /submit?wait=0 HTTP/1.1"


def test_a_submit_whose_connection_drops_after_it_was_sent_is_sent_again_with_its_key(tmp_path, redis_url):
    """The proxy passes the submit to the API (which stores the job), then closes the client's
    connection without its answer. A fresh client does not know yet whether the API honours keys:
    it asks (a malformed key and no job, nothing stored), then sends the request again with the same
    key and gets the first attempt's job. Before: ``requests.ConnectionError``, the job unknown."""
    with api_server(redis_url, tmp_path / "api", processes=1) as api:
        proxy = LossyProxy(api.port, "drop", trigger=REQUEST_LINE, last=REQUEST_LINE)
        try:
            client = Client(f"http://127.0.0.1:{proxy.port}", timeout=10)
            proxy.arm()
            job = client.submit_and_wait("sleep", seconds=0.031, wait=0)
            assert proxy.victims == 1 and proxy.exec_sent, "the answer was never lost"
            from redis import Redis

            direct = Redis.from_url(redis_url, decode_responses=True)
            assert _stored(direct, 0.031) == [job["job_id"]]  # the first attempt's job, once
            assert client._keys_honoured is True
            client.close()
        finally:
            proxy.close()


def test_an_attempt_delivered_after_its_resend_answers_the_resends_job(tmp_path, redis_url):
    """The proxy holds the first attempt (a congested network) past the client's timeout and
    delivers it after the client sent the request again with the same key: the re-send stored the
    job; the late attempt, run second, answers that job instead of storing another."""
    with api_server(redis_url, tmp_path / "api", processes=1) as api:
        proxy = LossyProxy(api.port, "hold", trigger=REQUEST_LINE, last=REQUEST_LINE)
        try:
            client = Client(f"http://127.0.0.1:{proxy.port}", timeout=1)
            client.submit_and_wait("sleep", seconds=0.04, wait=0)  # learns that the API honours keys
            proxy.arm()
            job = client.submit_and_wait("sleep", seconds=0.041, wait=0)
            assert proxy.victims == 1
            wait_until(lambda: proxy.delivered_late, 60, "the held attempt delivered")
            time.sleep(0.5)  # the API has answered it (into the void) by now
            from redis import Redis

            direct = Redis.from_url(redis_url, decode_responses=True)
            assert _stored(direct, 0.041) == [job["job_id"]]
            client.close()
        finally:
            proxy.close()


def test_a_lost_answer_from_an_api_without_keys_is_not_sent_again(tmp_path, redis_url):
    """Through a proxy that drops the header (as an older API ignores it) the client's question
    is answered for the body, so a submit whose connection dropped is not sent again (it could
    store a second job): ``requests.ConnectionError`` as before, and one job."""
    import requests

    with api_server(redis_url, tmp_path / "api", processes=1) as api:
        older = LossyProxy(api.port, "strip")
        dropping = LossyProxy(older.port, "drop", trigger=REQUEST_LINE, last=REQUEST_LINE)
        try:
            client = Client(f"http://127.0.0.1:{dropping.port}", timeout=10)
            dropping.arm()
            with pytest.raises(requests.ConnectionError):
                client.submit_and_wait("sleep", seconds=0.05, wait=0)
            assert client._keys_honoured is False
            time.sleep(0.3)
            from redis import Redis

            assert len(_stored(Redis.from_url(redis_url, decode_responses=True), 0.05)) == 1
            client.close()
        finally:
            dropping.close()
            older.close()


def test_submit_with_a_key_of_the_callers_may_be_repeated(tmp_path, redis_url):
    """``Client.submit(..., idempotency_key=...)``: a script's own retry of the same call gets the
    first attempt's job; without a key each call queues one."""
    from jobqueue.client import new_key

    with api_server(redis_url, tmp_path / "api", processes=1) as api:
        client = Client(api.url)
        key = new_key()
        first = client.submit("sleep", seconds=0.06, idempotency_key=key)
        assert client.submit("sleep", {"seconds": 0.06}, idempotency_key=key) == first
        assert client.submit("sleep", seconds=0.06) != first
        from redis import Redis

        assert len(_stored(Redis.from_url(redis_url, decode_responses=True), 0.06)) == 2
        client.close()
