"""Every way a user may write ``REDIS_URL``, end to end: the real API and a real worker must run a
job, or both must refuse to start with a message naming the variable.

The defect this guards: a db in the URL (``redis://redis:6379/0``, as the tutorial connects) made
redis-py's ``from_url`` override the db each client asked for, so the worker listened on the URL's
db while the API queued into ``REDIS_QUEUE_DB``: 202s, and jobs that stayed ``submitted`` forever.

Two real redis-servers: an open one, and a locked one (``requirepass``, an ACL user, and a TLS
port with a CA made here by ``openssl``). ``redis://localhost`` (the default port 6379) runs in a
network namespace of its own, so it never meets another Redis on this machine's 6379.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
import requests

from devstack.procs import Proc, free_port, wait_until
from devstack.redis_server import RedisServer, find_redis_server
from devstack.stack import Stack

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"
PASSWORD = "s3cret-default"
ACL_USER, ACL_PASSWORD = "student", "p@ss:w/rd"  # characters that must be %-escaped in a URL
pytestmark = pytest.mark.slow


class LockedRedis(RedisServer):
    """A redis-server with a password, an ACL user and a TLS port (certificates made with openssl)."""

    def __init__(self, workdir: Path):
        super().__init__(workdir, password=PASSWORD, appendonly=False)
        self.tls_port = free_port()
        self.ca = self.workdir / "ca.crt"

    def _certificates(self) -> None:
        d, run = self.workdir, lambda *a: subprocess.run(a, cwd=self.workdir, check=True, capture_output=True)
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        )
        run(
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        )
        (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run(
            "openssl",
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        )

    def start(self, timeout: float = 10.0) -> LockedRedis:
        self._certificates()
        conf = self.workdir / "redis.conf"
        conf.write_text(
            textwrap.dedent(f"""\
            port {self.port}
            bind 127.0.0.1
            dir {self.workdir}
            save ""
            appendonly no
            logfile redis.log
            requirepass {PASSWORD}
            user {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all
            tls-port {self.tls_port}
            tls-cert-file {self.workdir / "server.crt"}
            tls-key-file {self.workdir / "server.key"}
            tls-ca-cert-file {self.ca}
            tls-auth-clients no
            """)
        )
        self.proc = subprocess.Popen(
            [self.binary, str(conf)], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._pings, timeout, "the locked redis-server")
        return self

    def _pings(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "redis.log").read_text()[-2000:])
        try:
            return bool(self.client(socket_connect_timeout=0.2).ping())
        except redis.exceptions.ConnectionError:
            return False


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if find_redis_server() is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl (make setup installs them)")
    tmp = tmp_path_factory.mktemp("redis-urls")
    open_ = RedisServer(tmp / "open", appendonly=False).start()
    locked = LockedRedis(tmp / "locked").start()
    yield open_, locked
    open_.stop()
    locked.stop()


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


# id -> (server, url, extra env). Every one of these must run a job through API + worker.
RUNS = {
    "port": ("open", "redis://127.0.0.1:{port}", {}),
    "localhost-name": ("open", "redis://localhost:{port}", {}),
    "db0-path": ("open", "redis://127.0.0.1:{port}/0", {}),
    "db0-query": ("open", "redis://127.0.0.1:{port}?db=0", {}),
    "db5-with-matching-dbs": ("open", "redis://127.0.0.1:{port}/5", {"REDIS_JOBS_DB": "5", "REDIS_QUEUE_DB": "6"}),
    "db2-query-with-matching-dbs": (
        "open",
        "redis://127.0.0.1:{port}/?db=2",
        {"REDIS_JOBS_DB": "2", "REDIS_QUEUE_DB": "3"},
    ),
    "other-dbs-no-url-db": ("open", "redis://127.0.0.1:{port}", {"REDIS_JOBS_DB": "7", "REDIS_QUEUE_DB": "8"}),
    "password-in-url": ("locked", "redis://:" + PASSWORD + "@127.0.0.1:{port}/0", {}),
    "password-in-env": ("locked", "redis://127.0.0.1:{port}", {"REDIS_PASSWORD": PASSWORD}),
    "env-password-wins-over-url": ("locked", "redis://:wrong@127.0.0.1:{port}", {"REDIS_PASSWORD": PASSWORD}),
    "acl-user": ("locked", f"redis://{ACL_USER}:{_quote(ACL_PASSWORD)}@127.0.0.1:{{port}}", {}),
    "acl-user-password-in-env": (
        "locked",
        f"redis://{ACL_USER}@127.0.0.1:{{port}}/0",
        {"REDIS_PASSWORD": ACL_PASSWORD},
    ),
    "tls": ("locked", "rediss://:" + PASSWORD + "@localhost:{tls_port}?ssl_ca_certs={ca}", {}),
    "tls-acl-user-db1": (
        "locked",
        f"rediss://{ACL_USER}:{_quote(ACL_PASSWORD)}@127.0.0.1:{{tls_port}}/1?ssl_ca_certs={{ca}}",
        {"REDIS_JOBS_DB": "1", "REDIS_QUEUE_DB": "2"},
    ),
}

# id -> (server, url, extra env, words the refusal must contain). Both processes must exit 2.
REFUSES = {
    "db5": ("open", "redis://127.0.0.1:{port}/5", {}, ["REDIS_URL", "db 5", "REDIS_JOBS_DB"]),
    "db-query-2": ("open", "redis://127.0.0.1:{port}?db=2", {}, ["REDIS_URL", "db 2", "REDIS_JOBS_DB"]),
    "db-conflicts-with-env": (
        "open",
        "redis://127.0.0.1:{port}/3",
        {"REDIS_JOBS_DB": "4"},
        ["REDIS_URL", "db 3", "REDIS_JOBS_DB"],
    ),
    "db-not-a-number": ("open", "redis://127.0.0.1:{port}/jobs", {}, ["REDIS_URL", "jobs"]),
    # the fix shown was REDIS_JOBS_DB=16 and REDIS_QUEUE_DB=14 (or -1 and 0), which both refuse
    "db-16": ("open", "redis://127.0.0.1:{port}/16", {}, ["REDIS_URL selects db 16", "0 to 15", "leave the db out"]),
    "db-negative": ("open", "redis://127.0.0.1:{port}/-1", {}, ["REDIS_URL selects db -1", "0 to 15"]),
    "unknown-option": ("open", "redis://127.0.0.1:{port}?sockettimeout=3", {}, ["REDIS_URL", "sockettimeout"]),
    "bad-scheme": ("open", "http://127.0.0.1:{port}", {}, ["REDIS_URL", "redis://"]),
    # as an env file for docker or compose passes them: the fix shown kept the closing quote, and a
    # trailing space was redis-py's "Port could not be cast to integer value as '6379 '"
    "quoted": ("open", '"redis://127.0.0.1:{port}"', {}, ["REDIS_URL", "has quotes around it", "{port}\n"]),
    "trailing-space": ("open", "redis://127.0.0.1:{port} ", {}, ["REDIS_URL", "has white space around it", "{port}\n"]),
    # Redis refuses CLIENT SETNAME with a space as each connection is made: it started, then every
    # route that needs Redis answered 500
    "client-name-with-a-space": (
        "open",
        "redis://127.0.0.1:{port}?client_name=my%20app",
        {},
        ["REDIS_URL", "'my app'"],
    ),
}


def _url(template: str, server: RedisServer) -> str:
    return template.format(port=server.port, tls_port=getattr(server, "tls_port", 0), ca=getattr(server, "ca", ""))


def _pick(servers, which: str) -> RedisServer:
    return servers[0] if which == "open" else servers[1]


def _run_one_job(stack: Stack) -> dict:
    stack.start_worker()
    stack.start_api(web_concurrency=1)
    wait_until(
        lambda: requests.get(stack.url + "/readyz", timeout=2).status_code == 200,
        60,
        f"/readyz 200 from the API\n{stack.api.log_text()[-2000:] if stack.api else ''}",
    )
    r = requests.post(stack.url + "/submit", json={"operation": "top_locations", "params": {"n": 2}}, timeout=10)
    assert r.status_code == 202, r.text
    job = requests.get(f"{stack.url}/status/{r.json()['job_id']}?wait=30", timeout=40).json()
    return job


@pytest.mark.parametrize("case", sorted(RUNS))
def test_url_form_runs_a_job(servers, tmp_path, case):
    which, template, extra = RUNS[case]
    server = _pick(servers, which)
    env = {"REDIS_URL": _url(template, server), "REDIS_PASSWORD": "", **extra}
    with Stack(tmp_path, server, env=env) as stack:
        job = _run_one_job(stack)
        logs = "\n".join(p.log_text()[-1500:] for p in [*stack.workers, stack.api] if p)
        assert job["status"] == "complete", f"{case}: {job}\n{logs}"
        assert len(job["result"]["top_locations"]) == 2


def _exit_of(proc: Proc, timeout: float = 30) -> int:
    try:
        return proc.wait_exit(timeout)
    except subprocess.TimeoutExpired:
        proc.stop()
        pytest.fail(f"{proc.name} started instead of refusing the configuration:\n{proc.log_text()[-2000:]}")


@pytest.mark.parametrize("case", sorted(REFUSES))
def test_url_form_is_refused_naming_the_variable(servers, tmp_path, case):
    which, template, extra, words = REFUSES[case]
    server = _pick(servers, which)
    env = {"REDIS_URL": _url(template, server), "REDIS_PASSWORD": "", **extra}
    with Stack(tmp_path, server, env=env) as stack:
        api = stack._spawn("api", [str(BIN / "jobqueue-api")], {"PORT": str(free_port())})
        worker = stack.start_worker()
        for proc in (api, worker):
            assert _exit_of(proc) == 2, proc.log_text()[-2000:]
            text = proc.log_text()
            assert "Traceback" not in text, text
            for word in words:
                word = word.replace("{port}", str(server.port))  # the fix shown ends with the port
                assert word in text, f"{proc.name} refusal lacks {word!r}:\n{text}"


NETNS_SCRIPT = """
import os, subprocess, sys, time, requests
env = {**os.environ, "REDIS_URL": "redis://localhost", "PORT": "5000", "BIND_HOST": "127.0.0.1"}
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
log = open("processes.log", "wb")
procs = [subprocess.Popen([sys.argv[1], "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], stdout=log),
         subprocess.Popen([sys.argv[2]], env=env, stdout=log, stderr=log),
         subprocess.Popen([sys.argv[3]], env=env, stdout=log, stderr=log)]
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get("http://127.0.0.1:5000/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "API not ready"
        time.sleep(0.2)
    r = requests.post("http://127.0.0.1:5000/submit", json={"operation": "top_locations", "params": {"n": 2}})
    job = requests.get(f"http://127.0.0.1:5000/status/{r.json()['job_id']}?wait=30", timeout=40).json()
    print("STATUS", job["status"], flush=True)
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
"""


def test_host_only_url_uses_the_default_port(tmp_path):
    """``redis://localhost`` (no port: 6379), in a network namespace of its own."""
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare and ip (CI runs as root)")
    script = tmp_path / "netns_job.py"
    script.write_text(NETNS_SCRIPT)
    env = {
        **os.environ,
        "DATA_PATH": str(SAMPLE),
        "WORKER_METRICS_PORT": "0",
        "WEB_CONCURRENCY": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "WARNING",
        "DATA_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("REDIS_PASSWORD", None)
    out = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            str(script),
            find_redis_server() or "redis-server",
            str(BIN / "jobqueue-api"),
            str(BIN / "jobqueue-worker"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    logs = (
        (tmp_path / "processes.log").read_text(errors="replace")[-3000:]
        if (tmp_path / "processes.log").exists()
        else ""
    )
    assert out.returncode == 0 and "STATUS complete" in out.stdout, out.stdout + out.stderr + logs


@pytest.mark.parametrize("password", ["", "wrong"], ids=["no-password", "wrong-password"])
def test_credentials_redis_refuses_answer_503_naming_them(servers, tmp_path, password):
    """A student who forgets REDIS_PASSWORD against a Redis with ``requirepass`` (the chart's is
    one), or gives a wrong one: every route that needs Redis
    answers ``503 redis_misconfigured`` (``cause`` AUTH) naming REDIS_PASSWORD, a keyed submit
    too, and the worker logs the refusal and keeps retrying. Before, it was ``redis_unavailable``,
    "unreachable, retry shortly", and a keyed submit ``504`` "may have been stored"; and without a
    password the connection's handshake recursed (HELLO's health check reconnected into another
    HELLO) until Python's recursion limit: every route ``500 internal_error``, worker tracebacks."""
    locked = servers[1]
    env = {"REDIS_URL": f"redis://127.0.0.1:{locked.port}", "REDIS_PASSWORD": password}
    with Stack(tmp_path, locked, env=env) as stack:
        worker = stack.start_worker()
        stack.start_api(web_concurrency=1)
        assert requests.get(stack.url + "/readyz", timeout=10).status_code == 503
        body = {"operation": "top_locations", "params": {"n": 2}}
        answers = [
            requests.get(f"{stack.url}/status/00000000-0000-4000-8000-000000000000", timeout=10),
            requests.get(stack.url + "/jobs", timeout=10),
            requests.post(stack.url + "/submit", json=body, timeout=10),
            requests.post(stack.url + "/submit", json=body, headers={"Idempotency-Key": "k-1"}, timeout=10),
        ]
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "redis_misconfigured" and r.json()["cause"] == "AUTH", r.text
            assert "REDIS_PASSWORD" in r.json()["message"] and r.headers["Retry-After"] == "60", r.text
            if password:
                assert password not in r.text
        wait_until(lambda: "retrying" in worker.log_text(), 30, "the worker's first retry")
        assert "redis refuses this worker's settings: fix REDIS_URL's user and password" in worker.log_text()
        for proc in (worker, stack.api):
            assert proc is not None and proc.alive()
            text = proc.log_text()
            assert "RecursionError" not in text and "recursion" not in text, text[-3000:]


def test_tls_url_at_a_redis_without_tls_says_so(servers, tmp_path):
    """``rediss://`` at a Redis that does not speak TLS: the handshake is never answered, and both
    programs said only "Timeout connecting to server" / "Redis did not answer within 5 s", as for a
    Redis that is down. The API's 503 and 504 and both programs' logs now say to try redis://."""
    open_ = servers[0]
    env = {"REDIS_URL": f"rediss://127.0.0.1:{open_.port}", "REDIS_PASSWORD": ""}
    hint = "a Redis that does not speak TLS never answers the TLS handshake"
    with Stack(tmp_path, open_, env=env) as stack:
        worker = stack.start_worker()
        stack.start_api(web_concurrency=1)
        r = requests.get(stack.url + "/jobs", timeout=15)
        assert r.status_code == 503 and r.json()["error"] == "redis_unavailable", r.text
        assert hint in r.json()["message"] and "redis://" in r.json()["message"], r.text
        r = requests.post(stack.url + "/submit", json={"operation": "top_locations", "params": {"n": 2}}, timeout=15)
        assert r.status_code in (503, 504) and hint in r.json()["message"], r.text
        wait_until(lambda: "retrying" in worker.log_text(), 60, "the worker's first retry")
        assert hint in worker.log_text(), worker.log_text()[-2000:]
        assert stack.api is not None and hint in stack.api.log_text(), stack.api.log_text()[-2000:]
