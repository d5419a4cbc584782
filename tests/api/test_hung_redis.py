"""A Redis that hangs (its process stopped with SIGSTOP, or a proxy in front of it that accepts and
never answers): every request of the real ``jobqueue-api`` (gunicorn, two processes) answers within
its documented bound, in each form users write REDIS_URL, and the service recovers when Redis does.

The bounds (docs/delivery.md, docs/api.md): a request that needs Redis answers a JSON 503 within
REDIS_TIMEOUT_SECONDS (5 s by default); ``/readyz`` its 503 within 1 s, before the kubelet's probe
timeout; a waiting submit whose job is stored its 202 with the id within its wait and 1 s, never a
503; a long poll started before the hang its job as last read, at its wait's end. Before, redis-py's
socket timeout times its nested retries held each: a status read 20 s (10 s through the proxy), a
waiting submit ``?wait=6`` 21-26 s, ``/readyz`` 20 s, and with ``socket_timeout=10`` in the URL
four times that. The checks below are loose (seconds of slack, for a loaded machine): they tell
those apart, not milliseconds.
"""

from __future__ import annotations

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

from .support import spawn as in_thread

pytestmark = pytest.mark.slow

BOUND = 5.0          # REDIS_TIMEOUT_SECONDS's default
SLACK = 4.0          # for a loaded machine; every "before" figure is past bound + slack
WAIT = 6             # the waiting submit's ?wait=
POLL_WAIT = 4        # the long poll's ?wait=
SLEEP = {"operation": "sleep", "params": {"seconds": 0}}


class UnixRedis(RedisServer):
    """A redis-server that also listens on a unix socket (``unix://`` URLs)."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, appendonly=False)
        self.socket = self.workdir / "redis.sock"

    def start(self, timeout: float = 10.0) -> UnixRedis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
             "--appendonly", "no", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--logfile", "redis.log"], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.socket.exists() and self.client(socket_connect_timeout=0.2).ping(), timeout,
                   "redis-server on its unix socket")
        return self


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
    server = UnixRedis(tmp_path / "redis").start()
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
    if name == "long poll" and answer.status_code == 503:   # its first read met the hang
        name = "a read"
    expected, bound = {"readyz": (503, 3.0),   # the chart's probe timeout
                       "healthz": (200, 2.0), "healthz?detail": (200, BOUND + SLACK),
                       "waiting submit": (202, WAIT + 1 + SLACK),   # its job is stored: never a 503
                       "long poll": (200, POLL_WAIT + SLACK)}.get(name, (503, BOUND + SLACK))
    if answer.status_code != expected:
        return f"{answer.status_code} (expected {expected}) after {took:.1f} s: {answer.text[:200]}"
    if took > bound:
        return f"answered after {took:.1f} s (bound {bound:g} s)"
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
    return None


@pytest.mark.parametrize("form", ["plain", "timeouts-and-db-in-url", "unix-socket", "silent-proxy"])
def test_every_request_answers_within_its_bound_while_redis_hangs(tmp_path, form):
    with _stack(tmp_path, form) as (url, server, proxy):
        with api_server(url, tmp_path / "api") as api:
            worker = spawn([str(BIN / "jobqueue-worker")], {**api.env, "WORKER_METRICS_PORT": "0",
                                                               "SHUTDOWN_GRACE_SECONDS": "5"},
                           tmp_path / "worker.log", "worker")
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
    waiting: Future = in_thread(_timed, "POST", f"{base}/submit?wait={WAIT}",
                                {"operation": "sleep", "params": {"seconds": 1}})
    wait_until(lambda: server.client().zcard(keys.JOB_INDEX) > index, 10, "the waiting submit's job stored")
    polling: Future = in_thread(_timed, "GET", f"{base}/status/{held_id}?wait={POLL_WAIT}")
    time.sleep(1.0)   # its first read done (on a machine so loaded that it is not, it gets the 503)
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

    answers = {name: future.result(120) for name, future in
               {**plain, "readyz": ready, "healthz": live, "healthz?detail": detail, "waiting submit": waiting,
                "long poll": polling}.items()}
    table = "\n".join(f"{name}: {took:.1f} s, " + (f"{a.status_code} {a.text[:100]}" if isinstance(a, requests.Response)
                                                     else repr(a)) for name, (took, a) in answers.items())
    problems = [f"{name}: {why}" for name, (took, answer) in answers.items()
                if (why := _judge(name, took, answer))]
    assert not problems, "\n".join(problems) + "\n--- every answer ---\n" + table
    stored_id = answers["waiting submit"][1].json()["job_id"]

    # Redis answers again: so does the API at once, and the stored job runs to its end
    if proxy is not None:
        proxy.resume()
    else:
        server.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: requests.get(f"{base}/readyz", timeout=10).status_code == 200, 10, "/readyz 200 again")
    assert requests.post(f"{base}/submit", json=SLEEP, timeout=10).status_code == 202
    finished = requests.get(f"{base}/status/{stored_id}?wait=30", timeout=60).json()
    assert finished["status"] == "complete", finished
