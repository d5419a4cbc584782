"""A Redis that hangs (its process stopped with SIGSTOP, or a proxy in front of it that accepts and
never answers): every request of the real ``jobqueue-api`` (gunicorn, two processes) answers within
its documented bound, in each form users write REDIS_URL, and the service recovers when Redis does.

The bounds (docs/delivery.md, docs/api.md): a request that needs Redis answers a JSON 503 within
REDIS_TIMEOUT_SECONDS (5 s by default; a submit sent to the hung Redis a JSON 504 with its job's id,
since Redis runs it when it resumes); ``/readyz`` its 503 within 1 s, before the kubelet's probe
timeout, and ``/healthz?detail=1`` and ``/help`` (read-only diagnostics) their 200 within that bound too; a waiting submit whose job is stored its 202 with the id within its wait and 1 s, never a
503; a long poll started before the hang a 503 within 1 s after its wait's end (it answered 200 with
the job as first read, as if all were well). Before, redis-py's
socket timeout times its nested retries held each: a status read 20 s (10 s through the proxy), a
waiting submit ``?wait=6`` 21-26 s, ``/readyz`` 20 s, and with ``socket_timeout=10`` in the URL
four times that. The checks below are loose (seconds of slack, for a loaded machine): they tell
those apart, not milliseconds.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from devstack.api_server import api_server
from devstack.paths import BIN
from devstack.procs import spawn, stop, wait_until
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue import keys
from jobqueue.client import Client, StoredUnknown
from jobqueue.jobs import Job

from tests.support.lossy_proxy import LossyProxy

from .support import spawn as in_thread

pytestmark = pytest.mark.slow

BOUND = 5.0  # REDIS_TIMEOUT_SECONDS's default
SLACK = 4.0  # for a loaded machine; every "before" figure is past bound + slack
WAIT = 6  # the waiting submit's ?wait=
POLL_WAIT = 4  # the long poll's ?wait=
SLEEP = {"operation": "sleep", "params": {"seconds": 0}}


class SilentProxy:
    """Passes bytes between clients and Redis until :meth:`hang`; then passes nothing either way and
    keeps every connection (new ones too) open and silent, as a hung Redis or a partitioned network
    looks, until :meth:`resume` delivers what it held."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self._open = threading.Event()
        self._open.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                self._open.wait()
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return


@contextmanager
def _stack(tmp_path: Path, form: str) -> Iterator[tuple[str, object, object]]:
    """A redis-server, the URL the API and the worker get for ``form``, and the thing that hangs it."""
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path / "redis", appendonly=False, unix_socket=True).start()
    proxy = None
    try:
        if form == "plain":
            url = server.url
        elif form == "timeouts-and-db-in-url":
            url = f"{server.url}/0?socket_timeout=10&socket_connect_timeout=10"
        elif form == "unix-socket":
            url = f"unix://{server.socket}"
        else:
            proxy = SilentProxy(server.port)
            url = f"redis://127.0.0.1:{proxy.port}"
        yield url, server, proxy
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        if proxy is not None:
            proxy.close()
        server.stop()


def _timed(method: str, url: str, body: dict | None = None) -> tuple[float, requests.Response | BaseException]:
    started = time.monotonic()
    try:
        answer: requests.Response | BaseException = requests.request(method, url, json=body, timeout=90)
    except requests.RequestException as exc:
        answer = exc
    return time.monotonic() - started, answer


def _judge(name: str, took: float, answer) -> str | None:
    """What is wrong with one answer given while Redis hangs, or None."""
    if not isinstance(answer, requests.Response):
        return f"no answer ({answer!r}) after {took:.1f} s"
    expected, bound = {
        "readyz": (503, 3.0),  # the chart's probe timeout
        "submit": (504, BOUND + SLACK),  # sent to the hung Redis: may be stored
        "healthz": (200, 2.0),
        "healthz?detail": (200, 3.0),  # read-only diagnostics: /readyz's bound
        "help": (200, 3.0),
        "waiting submit": (202, WAIT + 1 + SLACK),  # its job is stored: never a 503
        "long poll": (503, POLL_WAIT + 1 + SLACK),  # its read at the wait's end meets the hang
    }.get(name, (503, BOUND + SLACK))
    if answer.status_code != expected:
        return f"{answer.status_code} (expected {expected}) after {took:.1f} s: {answer.text[:200]}"
    if took > bound:
        return f"answered after {took:.1f} s (bound {bound:g} s)"
    if name == "help":
        return None if "Queue: Redis unreachable" in answer.text else f"says {answer.text[:200]}"
    body = answer.json()
    if expected == 503 and not answer.headers["Content-Type"].startswith("application/json"):
        return "not JSON"
    if name == "readyz" and body["redis"] is not False:
        return f"says redis {body['redis']}"
    if name == "healthz?detail" and body["redis"] is not False:
        return f"says redis {body['redis']}"
    if name == "waiting submit" and not answer.headers.get("Location", "").endswith(f"/status/{body['job_id']}"):
        return f"Location {answer.headers.get('Location')}"
    if expected == 503 and name != "readyz" and body.get("error") != "redis_unavailable":
        return f"error {body.get('error')}"
    if expected == 504 and (
        body.get("error") != "redis_timeout"
        or "Retry-After" in answer.headers
        or answer.headers.get("Location") != f"/status/{body.get('job_id')}"
    ):
        return f"error {body.get('error')}, headers {dict(answer.headers)}"
    return None


def _worker(api, tmp_path):
    """A default jobqueue-worker on the API's settings (no metrics port, a short grace)."""
    return spawn(
        [str(BIN / "jobqueue-worker")],
        {**api.env, "WORKER_METRICS_PORT": "0", "SHUTDOWN_GRACE_SECONDS": "5"},
        tmp_path / "worker.log",
        "worker",
    )


@pytest.mark.parametrize("form", ["plain", "timeouts-and-db-in-url", "unix-socket", "silent-proxy"])
def test_every_request_answers_within_its_bound_while_redis_hangs(tmp_path, form):
    with _stack(tmp_path, form) as (url, server, proxy):
        with api_server(url, tmp_path / "api") as api:
            worker = _worker(api, tmp_path)
            try:
                _hang_and_recover(api.url, server, proxy)
            finally:
                if server.proc is not None:
                    server.proc.send_signal(signal.SIGCONT)
                if proxy is not None:
                    proxy.resume()
                stop(worker.popen, 30)
        assert '"status": 500' not in api.proc.log_text()


def _hang_and_recover(base: str, server, proxy) -> None:
    # a real worker runs jobs: one finishes within its submit's wait
    done = requests.post(f"{base}/submit?wait=20", json=SLEEP, timeout=60)
    assert done.status_code == 200, done.text
    # one in the worker's hands through the hang (the worker is one process: it runs the next after)
    held = requests.post(f"{base}/submit", json={"operation": "sleep", "params": {"seconds": 8}}, timeout=30)
    held_id = held.json()["job_id"]
    index = server.client().zcard(keys.JOB_INDEX)

    # a waiting submit whose job is stored before Redis hangs, and a long poll already waiting
    waiting: Future = in_thread(
        _timed, "POST", f"{base}/submit?wait={WAIT}", {"operation": "sleep", "params": {"seconds": 1}}
    )
    wait_until(lambda: server.client().zcard(keys.JOB_INDEX) > index, 60, "the waiting submit's job stored")
    polling: Future = in_thread(_timed, "GET", f"{base}/status/{held_id}?wait={POLL_WAIT}")
    time.sleep(1.0)  # its first read done (on a machine so loaded that it is not, it gets the 503)
    if proxy is not None:
        proxy.hang()
    else:
        server.proc.send_signal(signal.SIGSTOP)

    # then everything else, at once
    plain = {
        "status": in_thread(_timed, "GET", f"{base}/status/{held_id}"),
        "status?wait": in_thread(_timed, "GET", f"{base}/status/{held_id}?wait=3"),
        "submit": in_thread(_timed, "POST", f"{base}/submit", SLEEP),
        "jobs": in_thread(_timed, "GET", f"{base}/jobs"),
        "result": in_thread(_timed, "GET", f"{base}/jobs/{done.json()['job_id']}/result"),
    }
    ready = in_thread(_timed, "GET", f"{base}/readyz")
    live = in_thread(_timed, "GET", f"{base}/healthz")
    detail = in_thread(_timed, "GET", f"{base}/healthz?detail=1")
    usage = in_thread(_timed, "GET", f"{base}/help")

    answers = {
        name: future.result(120)
        for name, future in {
            **plain,
            "readyz": ready,
            "healthz": live,
            "healthz?detail": detail,
            "help": usage,
            "waiting submit": waiting,
            "long poll": polling,
        }.items()
    }
    table = "\n".join(
        f"{name}: {took:.1f} s, " + (f"{a.status_code} {a.text[:100]}" if isinstance(a, requests.Response) else repr(a))
        for name, (took, a) in answers.items()
    )
    problems = [f"{name}: {why}" for name, (took, answer) in answers.items() if (why := _judge(name, took, answer))]
    assert not problems, "\n".join(problems) + "\n--- every answer ---\n" + table
    stored_id = answers["waiting submit"][1].json()["job_id"]

    # Redis answers again: so does the API at once, and the stored job runs to its end
    if proxy is not None:
        proxy.resume()
    else:
        server.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: requests.get(f"{base}/readyz", timeout=10).status_code == 200, 60, "/readyz 200 again")
    assert requests.post(f"{base}/submit", json=SLEEP, timeout=10).status_code == 202
    finished = requests.get(f"{base}/status/{stored_id}?wait=30", timeout=60).json()
    assert finished["status"] == "complete", finished


def test_a_submit_redis_may_have_applied_is_answered_504_with_its_id_and_not_sent_again(tmp_path):
    """A submit whose transaction reached a Redis that then hung past the bound may be stored (Redis
    runs it when it resumes): it is answered 504 with the job's id and ``Location``, no Retry-After,
    and the client raises with that id instead of submitting again. A submit queued behind that call
    was never sent: 503 + Retry-After, nothing stored. Before, both got the same 503, the client
    resent the first on it, and one ``Client.submit`` left two jobs once Redis resumed."""
    with _stack(tmp_path, "plain") as (url, server, _), api_server(url, tmp_path / "api", processes=1) as api:
        client = Client(api.url, timeout=30)
        client.submit("top_locations", n=900)  # a warm connection, as a user's client has
        direct = server.client()
        calls: dict[str, Future] = {}
        server.proc.send_signal(signal.SIGSTOP)
        try:

            def by_client():
                try:
                    return client.submit("top_locations", n=901)
                except StoredUnknown as exc:
                    return exc

            calls["client"] = in_thread(by_client)  # the call in flight (fast path)
            time.sleep(1.0)
            calls["queued"] = in_thread(
                _timed, "POST", f"{api.url}/submit", {"operation": "top_locations", "params": {"n": 903}}
            )
            unsure = calls["client"].result(60)
            queued_took, queued = calls["queued"].result(60)
            # another one sent to the still hung Redis, through Flask's view (a query string)
            flask_took, flask = _timed(
                "POST", f"{api.url}/submit?via=flask", {"operation": "top_locations", "params": {"n": 902}}
            )
            # and the CLI against an API that does not honour keys (a proxy dropping the header; the
            # CLI re-sends with its key otherwise, test_idempotency_client.py): not resent either, it
            # prints the id to check and exits 3 (the API's 5xx)
            older = LossyProxy(api.port, "strip")
            try:
                cli = subprocess.run(
                    [
                        str(BIN / "jobqueue"),
                        "submit",
                        "top_locations",
                        "n=904",
                        "--url",
                        f"http://127.0.0.1:{older.port}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            finally:
                older.close()
        finally:
            server.proc.send_signal(signal.SIGCONT)

        assert isinstance(unsure, StoredUnknown), f"expected StoredUnknown, got {unsure!r}"
        assert unsure.status == 504 and unsure.code == "redis_timeout", unsure
        assert isinstance(queued, requests.Response) and queued.status_code == 503, queued
        assert queued.json()["error"] == "redis_unavailable" and queued.headers.get("Retry-After"), queued.headers
        assert queued_took <= BOUND + SLACK
        assert isinstance(flask, requests.Response) and flask.status_code == 504, flask
        body = flask.json()
        assert body["error"] == "redis_timeout" and "GET /status/" in body["message"], body
        assert flask.headers["Content-Type"].startswith("application/json")
        assert flask.headers.get("Location") == f"/status/{body['job_id']}", flask.headers
        assert "Retry-After" not in flask.headers, flask.headers
        assert flask_took <= BOUND + SLACK
        assert cli.returncode == 3, (cli.returncode, cli.stdout, cli.stderr)
        cli_id = cli.stderr.split("the job ")[1].split()[0]
        assert f"jobqueue status {cli_id}" in cli.stderr and "before submitting again" in cli.stderr, cli.stderr

        # Redis runs what it had read: the client's call stored its job once, under the id it raised
        def stored(n: int) -> list[str]:
            ids = direct.zrange(keys.JOB_INDEX, 0, -1)
            docs = [d for d in direct.mget([keys.job(i) for i in ids]) if d]
            return [Job.from_json(d).id for d in docs if Job.from_json(d).params.get("n") == n]

        wait_until(lambda: stored(901), 60, "the client's job stored after Redis resumed")
        time.sleep(1.0)  # anything resent would have landed by now
        assert stored(901) == [unsure.job_id]
        assert client.status(unsure.job_id)["status"] == "submitted"
        assert stored(903) == []  # queued behind: never sent
        assert len(stored(904)) <= 1 and set(stored(904)) <= {cli_id}  # at most once, under the id printed
        # the 504's advice holds either way: its status says whether it was stored
        flask_status = requests.get(f"{api.url}{flask.headers['Location']}", timeout=10).status_code
        assert (flask_status, len(stored(902))) in {(200, 1), (404, 0)}, (flask_status, stored(902))
        client.close()


class _Recording(Client):
    """The project's client, noting each 504 it resolves (to show the test took that path)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unsure: list[str] = []

    def _resolve(self, unsure, deadline):
        self.unsure.append(unsure.job_id)
        return super()._resolve(unsure, deadline)


def test_run_and_submit_and_wait_resolve_a_504_themselves_one_job_each(tmp_path):
    """ "Run it and give me the result" calls resolve a submit answered 504 (Redis hung after the job
    was sent) by themselves. Against an API that does not honour ``Idempotency-Key`` (an older one;
    here a proxy drops the header, so the 504 does not echo the key) they fall back to polling the
    job's status; stored (Redis ran the transaction when it resumed), they wait for it; not stored
    (404 twice, a second apart: here Redis was restarted empty), they submit again under a new id.
    Either way exactly one job runs and its result comes back. Before, ``Client.run``,
    ``submit_and_wait`` and ``jobqueue submit --wait`` raised ``StoredUnknown`` (the CLI exited 3).
    (With an API that honours keys they send the request again instead: test_idempotency_client.py.)"""

    def stored(direct, seconds: float) -> list[str]:
        ids = direct.zrange(keys.JOB_INDEX, 0, -1)
        docs = [Job.from_json(d) for d in direct.mget([keys.job(i) for i in ids]) if d] if ids else []
        return [job.id for job in docs if job.params.get("seconds") == seconds]

    with _stack(tmp_path, "plain") as (url, server, _), api_server(url, tmp_path / "api", processes=1) as api:
        worker = _worker(api, tmp_path)
        older = LossyProxy(api.port, "strip")  # an API without Idempotency-Key, as the client sees it
        base = f"http://127.0.0.1:{older.port}"
        try:
            client = _Recording(base, timeout=30)
            assert client.run("sleep", seconds=0.01, timeout=30) == {"slept": 0.01}  # warm, as a user's is

            # stored: the 504's job is in Redis's socket buffer and runs when Redis resumes
            server.proc.send_signal(signal.SIGSTOP)
            try:
                ran = in_thread(lambda: client.run("sleep", seconds=0.011, timeout=60))
                wait_until(lambda: client.unsure or ran.done(), BOUND + 15, "run's submit answered 504")
                waited = in_thread(lambda: client.submit_and_wait("sleep", seconds=0.012, wait=30))
                wait_until(lambda: len(client.unsure) == 2 or waited.done(), BOUND + 15, "its submit's 504")
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert ran.result(90) == {"slept": 0.011}
            job = waited.result(90)
            assert job["status"] == "complete" and job["result"] == {"slept": 0.012}, job
            direct = server.client()
            time.sleep(1.5)  # a second submit would have landed by now
            assert stored(direct, 0.011) == [client.unsure[0]]  # sent on the warm connection: stored
            # submit_and_wait's went on a new connection, whose handshake may be what met the hang (then
            # nothing was sent, 404, and it submitted again): one job either way, the one it returned
            assert stored(direct, 0.012) == [job["job_id"]]

            # not stored: Redis hung, then restarted empty (its process killed): the 504's job is gone
            server.proc.send_signal(signal.SIGSTOP)
            cli = subprocess.Popen(
                [str(BIN / "jobqueue"), "submit", "sleep", "seconds=0.013", "--wait", "--timeout", "90"],
                env={**api.env, "JOBQUEUE_URL": base},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines: list[str] = []
            in_thread(lambda: lines.extend(cli.stderr))
            wait_until(lambda: any("checking its status" in line for line in lines), BOUND + 15, "the CLI's 504")
            server.kill()
            server.start()
            out, _ = cli.communicate(timeout=90)
            err = "".join(lines)
            assert cli.returncode == 0, (cli.returncode, out, err)
            assert json.loads(out) == {"slept": 0.013}, out
            unsure_id = err.split("the job ")[1].split()[0]
            (again,) = stored(server.client(), 0.013)
            assert again != unsure_id, err

            # Redis stays hung past the call's timeout: StoredUnknown then, not a minute later (the
            # checks' 503s are not retried after their Retry-After: before, one check took 42 s)
            client.unsure.clear()
            server.proc.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoredUnknown) as raised:
                    client.run("sleep", seconds=0.014, timeout=12)
                took = time.monotonic() - started
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert took <= 12 + SLACK, took
            assert raised.value.job_id == client.unsure[-1]
            wait_until(lambda: stored(server.client(), 0.014), 60, "its job stored after Redis resumed")
            assert stored(server.client(), 0.014) == [raised.value.job_id]  # one job, the id it raised
        finally:
            if server.proc is not None:
                server.proc.send_signal(signal.SIGCONT)
            stop(worker.popen, 30)
            older.close()
        client.close()
