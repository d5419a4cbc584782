"""``Client.run`` and ``jobqueue submit --wait`` take one HTTP exchange for a job that ends within
the wait (``POST /submit?wait=``), and still work against an API that predates it (the tutorial's
202 ``{"job_id", "status": "submitted"}``, then a long poll). A real API + worker + redis-server;
the older API is a real HTTP server answering exactly that contract.
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from devstack.paths import BIN
from devstack.stack import running_stack
from jobqueue.client import Client, JobFailed


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("client-run")) as stack:
        stack.start_api(web_concurrency=1)
        stack.start_worker()
        stack.wait_workers_registered(1)
        yield stack


def recording(client: Client) -> list[tuple[str, str]]:
    """The (method, path) of every request ``client`` makes, recorded by wrapping its own method."""
    made: list[tuple[str, str]] = []
    send = client._request

    def _request(method, path, *args, **kwargs):
        made.append((method, path))
        return send(method, path, *args, **kwargs)

    client._request = _request  # type: ignore[method-assign]
    return made


def test_run_takes_one_exchange_for_a_job_that_ends_within_the_wait(stack):
    client = Client(stack.url)
    made = recording(client)
    assert isinstance(client.run("sleep", seconds=0), dict)
    assert made == [("POST", "/submit")]


def test_a_png_result_is_fetched_after_the_one_exchange(stack):
    client = Client(stack.url)
    made = recording(client)
    png = client.run("plot_top_locations", n=3, timeout=60)
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert [m for m, _ in made] == ["POST", "GET"] and made[1][1].endswith("/result")


def test_submit_and_wait_answers_the_current_document_when_the_wait_is_up(stack):
    client = Client(stack.url)
    job = client.submit_and_wait("sleep", seconds=1.5, wait=0.2)
    assert job["status"] in ("submitted", "in-progress") and job["job_id"]
    assert client.wait(job["job_id"], timeout=30)["status"] == "complete"
    with pytest.raises(TimeoutError, match="still"):
        client.run("sleep", seconds=3, timeout=0.5)


def test_jobqueue_submit_wait_prints_the_result_of_the_one_exchange(stack):
    r = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "top_locations", "n=2", "--wait", "--url", stack.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["top_locations"]) == 2 and r.stderr.startswith("submitted ")


class _OlderApi(BaseHTTPRequestHandler):
    """The tutorial's contract only: POST /submit -> 202 {"job_id", "status": "submitted"} at once
    (any query string ignored); GET /status/<id> -> the job, final on the ``finish_after``-th read."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str]] = []
    final: dict = {}
    finish_after = 1

    def _send(self, code: int, doc: dict) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(("POST", self.path))
        self._send(202, {"job_id": "j1", "status": "submitted"})

    def do_GET(self) -> None:
        if self.path == "/operations":  # the CLI types key=value pairs by it
            return self._send(200, {"operations": []})
        type(self).seen.append(("GET", self.path))
        reads = sum(1 for method, _ in self.seen if method == "GET")
        done = reads >= self.finish_after
        self._send(200, self.final if done else {"job_id": "j1", "status": "in-progress", "result": None})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def older_api():
    _OlderApi.seen, _OlderApi.finish_after = [], 1
    _OlderApi.final = {"job_id": "j1", "status": "complete", "result": {"incident_count": 7}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OlderApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_run_against_an_api_that_ignores_wait_on_submit_long_polls_as_before(older_api):
    _OlderApi.finish_after = 2
    assert Client(older_api).run("incident_count_by_date", date="2024-03-09") == {"incident_count": 7}
    assert _OlderApi.seen == [("POST", "/submit?wait=30"), ("GET", "/status/j1?wait=30"), ("GET", "/status/j1?wait=30")]


def test_a_failed_job_is_job_failed_on_either_api(older_api):
    _OlderApi.final = {"job_id": "j1", "status": "failed", "error": "boom"}
    with pytest.raises(JobFailed, match="boom"):
        Client(older_api).run("top_locations", n=1)


def test_jobqueue_submit_wait_against_an_older_api(older_api):
    r = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "incident_count_by_date", "date=2024-03-09", "--wait", "--url", older_api],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"incident_count": 7}


@pytest.fixture(scope="module")
def full_api(tmp_path_factory):
    """An API whose long polls are all refused, as when MAX_WAITERS polls are already parked."""
    with running_stack(tmp_path_factory.mktemp("client-full")) as stack:
        stack.start_api(web_concurrency=1, MAX_WAITERS="0", DIAGNOSTIC_OPERATIONS="1")
        stack.start_worker()
        stack.wait_workers_registered(1)
        yield stack


def test_long_polls_the_api_does_not_hold_are_spaced_out(full_api):
    """Each poll of a 2 s job is answered at once (no final status); the client, the CLI's
    ``submit --wait`` and ``watch`` pause before polling again instead of sending ~1,000 polls a
    second (about 4,000 before, for 3 s of waiting), and still end with the job."""
    client = Client(full_api.url)
    made = recording(client)
    assert client.run("sleep", seconds=2, timeout=60) == {"slept": 2.0}
    assert 2 <= len(made) <= 40, len(made)

    job_id = client.submit("sleep", seconds=2)
    made.clear()
    assert client.wait(job_id, timeout=60)["status"] == "complete"
    assert 1 <= len(made) <= 40, len(made)

    def status_reads() -> float:
        text = requests.get(f"{full_api.url}/metrics", timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("jobqueue_http_requests_total{") and 'route="/status/<job_id>"' in line
        )

    for command in (["submit", "sleep", "seconds=2", "--wait"], ["watch", client.submit("sleep", seconds=2)]):
        before = status_reads()
        r = subprocess.run(
            [str(BIN / "jobqueue"), *command, "--url", full_api.url], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        assert status_reads() - before <= 40, command
