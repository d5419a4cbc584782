"""The ``jobqueue`` and ``jobqueue-api`` commands as users run them (real subprocesses): one
key=value parser typed by the operation's declaration, exit statuses defined once, --version and
--help that never start a server, settings through Settings, and HTTP that honours Retry-After.

Defects this guards (each reproduced before the fix): ``jobqueue submit incidents_by_road road=183``
was refused ("'road' must be a string") while ``analyze`` answered; ``jobqueue-api --help`` started
gunicorn; ``jobqueue --version`` was a usage error; ``DATA_MAX_BYTES=abc jobqueue analyze`` was a
traceback; the client gave up on the API's 503 + Retry-After; ``data fetch`` gave up on a 429.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack.procs import free_port
from devstack.stack import running_stack

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"


def jq(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "jobqueue"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cli"), JOB_TIMEOUT_SECONDS="1") as s:  # sleep 2 fails
        s.start_worker()
        s.start_api(web_concurrency=1)
        yield s


@pytest.mark.slow
def test_submit_and_analyze_parse_key_value_the_same_way(stack, tmp_path):
    local = jq("analyze", "incidents_by_road", "road=183", "--data", str(SAMPLE), env={"DATA_CACHE_DIR": str(tmp_path)})
    assert local.returncode == 0, local.stderr
    queued = jq("submit", "incidents_by_road", "road=183", "--wait", "--url", stack.url)
    assert queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout) == json.loads(local.stdout)
    assert json.loads(queued.stdout)["road"] == "183"
    top = jq("submit", "top_locations", "n=3", "--wait", "--url", stack.url)  # n typed as an integer
    assert top.returncode == 0 and len(json.loads(top.stdout)["top_locations"]) == 3, top.stderr
    # the JSON number 1e1 is the integer 10 to the API: typed as such, it is too (it was refused)
    top = jq("submit", "top_locations", "n=1e1", "--wait", "--url", stack.url)
    assert top.returncode == 0 and len(json.loads(top.stdout)["top_locations"]) == 10, top.stderr


@pytest.mark.slow
@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_url_is_usage_not_the_default(url):
    """`jobqueue jobs --url "$API"` with API unset sent the request to the default address, saying
    nothing of the flag it was given."""
    r = jq("jobs", "--url", url, env={"JOBQUEUE_URL": "http://127.0.0.1:1"}, timeout=60)
    assert r.returncode == 2 and "--url is empty (an unset shell variable?)" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_jobqueue_url_is_usage_not_the_default(url):
    """`export JOBQUEUE_URL=$API` with API unset sent every command to the default address (on a
    shared machine, another user's stack), as an empty --url once did."""
    r = jq("jobs", env={"JOBQUEUE_URL": url}, timeout=60)
    assert r.returncode == 2 and "JOBQUEUE_URL is set but empty" in r.stderr, r.stderr
    assert "unset JOBQUEUE_URL" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["submit", "top_locations", "n=ten"], 2, ["'n' must be an integer"]),
        (["submit", "top_locations", "n=5.5"], 2, ["'n' must be an integer\n"]),  # as JSON's 5.5 (no "got '5.5'")
        (["submit", "top_locations", "n=5000"], 2, ["'n' must be at most 1000"]),
        (["submit", "top_locations", "n=1", "n=2"], 2, ["'n' given twice"]),
        (["submit", "top_locations", "n"], 2, ["key=value"]),
        (["submit", "nope"], 2, ["unknown_operation"]),
        (["submit", "top_locatons"], 2, ["unknown_operation", "(did you mean 'top_locations'?)"]),
        (["submit", "top_locations", "count=3"], 2, ["unknown parameter 'count'"]),
        (["status", "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"], 2, ["job_not_found"]),
        (["submit", "sleep", "seconds=5", "--wait", "--timeout", "0.5"], 4, ["still"]),
        (["submit", "sleep", "seconds=2", "--wait"], 1, ["failed", "time limit"]),
    ],
)
def test_exit_statuses_against_the_api(stack, args, code, words):
    r = jq(*args, "--url", stack.url)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def _closed_port() -> int:
    """A port nothing listens on: devstack's, outside the kernel's ephemeral range, so another
    program's ``bind(0)`` listener cannot land on it between here and the CLI's connect."""
    return free_port()


def test_unreachable_api_is_exit_3_with_a_hint():
    url = f"http://127.0.0.1:{_closed_port()}"
    r = jq("submit", "top_locations", "n=1", "--url", url, timeout=60)
    assert r.returncode == 3, r.stderr
    assert f"cannot reach the API at {url}" in r.stderr and "make up" in r.stderr and "JOBQUEUE_URL" in r.stderr
    assert "Traceback" not in r.stderr and "HTTPConnectionPool" not in r.stderr
    assert "(connection refused)" in r.stderr, r.stderr


def test_a_refused_connection_is_said_at_once_while_it_is_retried():
    """A refused connection was tried again for about 15 s with nothing on the screen, then the error:
    the retries are said on stderr as they begin (once, however many requests)."""
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = subprocess.Popen(
        [str(BIN / "jobqueue"), "jobs", "--url", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        start = time.monotonic()
        assert proc.stderr is not None
        first = proc.stderr.readline()
        took = time.monotonic() - start
        assert proc.poll() is None and took < 5, (took, first)  # still retrying, and said so
        assert "connection refused" in first and "trying again for up to 15 s" in first, first
        _, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 3 and rest.count("\n") == 1 and f"cannot reach the API at {url}" in rest, rest


def test_a_malformed_url_is_usage_not_a_traceback():
    # an unclosed IPv6 bracket: the CLI refuses it as usage before sending anything (the client's
    # cached environment once parsed it first and crashed); test_cli_usage.py has the other forms
    r = jq("status", "abc", "--url", "http://[::1:5000", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--url 'http://[::1:5000' is not a URL" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["analyze", "top_locations", "n=0"], 2, ["at least 1"]),
        (["analyze", "top_locations", "--data", "/nonexistent.csv"], 2, ["no such file"]),
        (["nope"], 2, ["invalid choice"]),
    ],
)
def test_exit_statuses_in_process_commands(args, code, words, tmp_path):
    r = jq(*args, env={"DATA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == code and all(w in r.stderr for w in words), r.stderr


@pytest.mark.parametrize(
    "pairs,said",
    [
        (
            ["road=S", "CONGRESS"],
            "parameters are key=value, got 'CONGRESS' after road=S: a value with spaces goes in quotes, "
            "e.g. road='S CONGRESS'",
        ),
        (["n=", "5"], "parameters are key=value, got '5' after n=: write n=5, with no space after '='"),
        (["2024-03-09"], "parameters are key=value, got '2024-03-09'"),
    ],
)
def test_a_value_split_by_the_shell_is_named_with_the_quoting_that_keeps_it_whole(pairs, said, tmp_path):
    """`jobqueue analyze incidents_by_road road=S CONGRESS` (README's road, unquoted) and `n= 5`
    said only "parameters are key=value, got 'CONGRESS'", while the pair before it was the mistake."""
    r = jq("analyze", "incidents_by_road", *pairs, env={"DATA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert said in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["submit", "analyze"])
def test_a_missing_operation_is_the_only_thing_said_to_be_missing(command):
    """``jobqueue submit`` alone said "required: operation, key=value", yet key=value pairs are
    optional (``jobqueue submit unique_issues`` takes none), so a student went looking for one."""
    r = jq(command, timeout=60)
    assert r.returncode == 2 and "the following arguments are required: operation" in r.stderr, r.stderr
    assert "required: operation, key=value" not in r.stderr, r.stderr


@pytest.mark.parametrize(
    "given", ["https://data.austintexas.gov/api/views/dx9v-zd7x/rows.csv", "file:///srv/data/traffic_incidents.csv"]
)
def test_a_url_as_the_data_file_says_it_is_a_url(given, tmp_path):
    """DATA_PATH (or --data) set to the portal's address, as a tutorial links it, was "https:/data...:
    no such file" (the path's double slash folded): it now says the loader reads a file on this
    machine and how to download one."""
    for r in (
        jq("analyze", "top_locations", "n=1", "--data", given, env={"DATA_CACHE_DIR": str(tmp_path)}),
        jq("analyze", "top_locations", "n=1", env={"DATA_PATH": given, "DATA_CACHE_DIR": str(tmp_path)}),
    ):
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"{given} is a URL" in r.stderr and "jobqueue data fetch" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("DATA_MAX_BYTES", "abc", ["DATA_MAX_BYTES must be an integer"]),
        ("DATA_MAX_BYTES", "0", ["DATA_MAX_BYTES must be at least 1"]),
    ],
)
def test_malformed_data_settings_are_a_message_not_a_traceback(name, value, words, tmp_path):
    r = jq("analyze", "top_locations", "n=1", "--data", str(SAMPLE), env={name: value, "DATA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert all(w in r.stderr for w in words), r.stderr


def test_data_settings_reach_the_loader(tmp_path):
    """DATA_MAX_BYTES and DATA_CACHE_DIR go through Settings into load_dataset (no side door)."""
    small = jq(
        "analyze",
        "top_locations",
        "n=1",
        "--data",
        str(SAMPLE),
        env={"DATA_MAX_BYTES": "1000", "DATA_CACHE_DIR": str(tmp_path / "c1")},
    )
    assert small.returncode == 2 and "DATA_MAX_BYTES (1000 bytes)" in small.stderr, small.stderr
    ok = jq("analyze", "top_locations", "n=1", "--data", str(SAMPLE), env={"DATA_CACHE_DIR": str(tmp_path / "c2")})
    assert ok.returncode == 0 and any((tmp_path / "c2").iterdir()), ok.stderr


def test_version_and_help_never_start_a_server():
    for cmd in (["jobqueue", "--version"], ["jobqueue-api", "--version"]):
        r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith(f"{cmd[0]} ") and r.stdout.strip()[-1].isdigit(), r
    port = _closed_port()
    r = subprocess.run(
        [str(BIN / "jobqueue-api"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PORT": str(port), "BIND_HOST": "127.0.0.1"},
    )
    assert r.returncode == 0 and "usage: jobqueue-api" in r.stdout and "REDIS_URL" in r.stdout
    assert "Starting gunicorn" not in r.stdout + r.stderr
    help_text = " ".join(jq("--help").stdout.split())
    assert "exit status: 0 ok, 1 the job or operation failed, 2 bad usage or input, 3 service unreachable" in help_text
    # docs/api.md: "`jobqueue --help` lists them", and its table has 130 and 141 too
    assert "130 interrupted (Ctrl-C), 141 its output's reader went away" in help_text


def test_output_cut_short_by_its_reader_stops_quietly():
    """`jobqueue operations --json | head -c 20` printed a BrokenPipeError traceback. The pipe's reader
    is gone before the command writes (closed at once here, so the outcome does not depend on timing):
    it now stops quietly with 141, the status a shell gives `cat` in the same place."""
    proc = subprocess.Popen(
        [str(BIN / "jobqueue"), "operations", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err, err


def test_output_the_pipe_holds_whole_exits_0_before_its_reader_goes():
    """docs/api.md's 141 row: `jobqueue operations --json | head -c 20` usually exits 0, since the
    pipe takes its ~10 KB before `head` exits; the row gave it as the example of 141 alone."""
    proc = subprocess.Popen(
        [str(BIN / "jobqueue"), "operations", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    out = proc.stdout.read()
    proc.stdout.close()
    assert 1000 < len(out) < 64 * 1024


def test_output_reaches_its_pipe_in_one_write():
    """`jobqueue submit top_locations n=200 --wait | head -1` ended 141 or 0 by chance: Python wrote
    the 7 KB result, then its last newline (and longer ones 8 KiB at a time), so `head` could leave
    between two writes of an output the pipe would have held whole. A socket that keeps each write
    a message of its own shows the writes: the whole output must be the first."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with reader, writer:
        proc = subprocess.Popen(
            [str(BIN / "jobqueue"), "operations", "--json"],
            stdout=writer.fileno(),
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        writer.close()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        first = reader.recv(1 << 20)
        assert 8 * 1024 < len(first) < 64 * 1024 and first.endswith(b"]\n"), len(first)
        assert reader.recv(1 << 20) == b""  # nothing after it


# --- Retry-After ----------------------------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    """Answers the first ``fail`` requests of each path with ``status`` + Retry-After: 1."""

    plan: dict[str, int] = {}
    seen: list[tuple[str, str, float]] = []
    status = 503
    body = b""

    def _answer(self) -> None:
        path = self.path.split("?")[0]
        type(self).seen.append((self.command, path, time.monotonic()))
        if self.plan.get(path, 0) > 0:
            self.plan[path] -= 1
            self.send_response(self.status)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            payload = b'{"error": "busy", "message": "come back"}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            payload, code = json.dumps({"job_id": "0" * 8, "status": "submitted"}).encode(), 202
        else:
            payload, code = self.body, 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer  # noqa: N815  (http.server's names)

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def flaky():
    _Flaky.plan, _Flaky.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_waits_out_retry_after_on_503_and_429(flaky):
    from jobqueue.client import Client

    _, url = flaky
    for status in (503, 429):
        _Flaky.status, _Flaky.plan, _Flaky.seen = status, {"/submit": 2}, []
        assert Client(url).submit("top_locations", n=1) == "0" * 8
        times = [t for method, path, t in _Flaky.seen if path == "/submit"]
        assert len(times) == 3, _Flaky.seen  # two refusals, then the 202
        assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 0.9  # waited as told (lower bound only)


def test_the_cli_says_why_it_waits_out_a_rate_limit(flaky):
    """A 429's Retry-After (the API's rate limit: up to the rest of its minute) was waited out in
    silence: `jobqueue submit` sat for 56 s printing nothing, like a hung command. It now says so
    on stderr before each wait; stdout stays the answer alone."""
    _, url = flaky
    _Flaky.status, _Flaky.plan, _Flaky.seen = 429, {"/jobs": 1}, []
    _Flaky.body = json.dumps({"jobs": [], "count": 0, "limit": 20, "next_cursor": None}).encode()
    r = jq("jobs", "--url", url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["jobs"] == []
    assert "rate limited (429): trying again in 1 s" in r.stderr, r.stderr
    assert len(_Flaky.seen) == 2


def _portal(flaky, fail: int) -> str:
    _, url = flaky
    _Flaky.status = 429
    _Flaky.body = SAMPLE.read_bytes()
    _Flaky.plan = {"/api/views/dx9v-zd7x/rows.csv": fail}
    return url


def test_data_fetch_retries_429_and_shows_no_progress_when_piped(flaky, tmp_path):
    url = _portal(flaky, fail=2)
    out = tmp_path / "live.csv"
    r = jq("data", "fetch", "--base-url", url, "--output", str(out), env={"DATA_CACHE_DIR": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert len(_Flaky.seen) == 3 and "downloading" not in r.stderr
    assert json.loads(r.stdout)["rows"] == 5000


def test_data_fetch_shows_progress_on_a_terminal(flaky, tmp_path):
    url = _portal(flaky, fail=0)
    out = tmp_path / "live.csv"
    primary, replica = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "jobqueue"), "data", "fetch", "--base-url", url, "--output", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=replica,
        cwd=REPO_ROOT,
        env={**os.environ, "DATA_CACHE_DIR": str(tmp_path / "c")},
    )
    os.close(replica)
    stdout, _ = proc.communicate(timeout=120)
    seen = b""
    try:
        while chunk := os.read(primary, 4096):
            seen += chunk
    except OSError:
        pass
    os.close(primary)
    assert proc.returncode == 0, seen
    size_mb = f"{SAMPLE.stat().st_size / 1e6:.1f} MB"
    assert b"downloading: " + size_mb.encode() in seen, seen
    assert json.loads(stdout)["rows"] == 5000


def test_data_fetch_gives_up_with_exit_3_when_the_portal_keeps_refusing(flaky, tmp_path):
    url = _portal(flaky, fail=100)
    r = jq(
        "data", "fetch", "--base-url", url, "--output", str(tmp_path / "x.csv"), env={"DATA_CACHE_DIR": str(tmp_path)}
    )
    assert r.returncode == 3 and "429" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.csv").exists()


def test_ctrl_c_outside_a_client_command_is_one_line(tmp_path):
    """Ctrl-C while the command loads its modules (the first half second) or runs an in-process
    command (`analyze`, `data generate`) was a KeyboardInterrupt traceback; docs/api.md's 130 row
    promises one line."""
    import signal

    proc = subprocess.Popen(
        [str(BIN / "jobqueue"), "data", "generate", "--rows", "20000000", "--output", str(tmp_path / "big.csv")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's Ctrl-C finds it
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == "jobqueue: interrupted\n", err


def test_a_data_file_given_without_data_is_named_so():
    """`jobqueue data info data/x.csv` said "unrecognized arguments: data/x.csv" under `jobqueue
    data`'s usage, which names no file: it now shows `data info`'s own usage and the --data to write."""
    r = jq("data", "info", "data/traffic_incidents_sample.csv")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "usage: jobqueue data info" in r.stderr, r.stderr
    assert "write --data data/traffic_incidents_sample.csv" in r.stderr, r.stderr
    # a stray word where there is no --data to give it to is still named as argparse names it
    r = jq("data", "generate", "foo")
    assert (
        r.returncode == 2 and "usage: jobqueue data generate" in r.stderr and "unrecognized arguments: foo" in r.stderr
    )


def test_a_data_file_given_to_analyze_without_data_is_named_so():
    """`jobqueue analyze top_locations n=5 data/x.csv` said to write n='5 data/x.csv' (the file read as
    the rest of a value the shell split); a word naming a file is the data file, for --data."""
    r = jq("analyze", "top_locations", "n=5", "data/traffic_incidents_sample.csv")
    assert r.returncode == 2 and "write --data data/traffic_incidents_sample.csv" in r.stderr, r.stderr
    assert "n='5" not in r.stderr
