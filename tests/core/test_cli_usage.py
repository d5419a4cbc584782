"""Bad ``jobqueue`` command lines are usage errors (exit 2) refused before anything is submitted,
and a result that cannot be saved is one line with its own exit status (5), run as users run the
command (a subprocess) against the real API.

Defects this guards (each reproduced before the fix): ``--url 127.0.0.1:7300`` (no scheme, the form
curl accepts) and ``JOBQUEUE_URL=localhost:7300`` were "cannot reach the API", exit 3; a query string
was joined in front of every path and its non-JSON answer called "cannot reach"; ``--timeout -1``
submitted the job and gave up at once (exit 4); ``jobs --limit 0`` exited 1 ("the job failed");
``--output /nonexistent/dir/x.png`` ran the job and ended in a traceback (exit 1).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from devstack.stack import running_stack
from tests.core.test_cli import BIN, _Flaky, flaky, jq  # noqa: F401  (flaky: a fixture)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cli-usage")) as s:
        s.start_worker()
        s.start_api(web_concurrency=1)
        yield s


def _job_count(stack) -> int:
    r = jq("jobs", "--url", stack.url, "--json", "--limit", "100")
    assert r.returncode == 0, r.stderr
    return len(json.loads(r.stdout)["jobs"])


def _hostport(stack) -> str:
    return stack.url.split("://", 1)[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "form,words",
    [
        ("{hostport}", ["needs http:// or https://", "e.g. http://{hostport}"]),
        ("localhost:{port}", ["needs http:// or https://"]),
        (" {url}", ["has spaces"]),
        ("{url}?x=1", ["no query string"]),
        ("http://[::1:5000", ["is not a URL"]),
    ],
)
def test_a_url_the_client_cannot_use_is_usage_not_unreachable(stack, form, words):
    hostport = _hostport(stack)
    url = form.format(hostport=hostport, port=hostport.rsplit(":", 1)[1], url=stack.url)
    before = _job_count(stack)
    for source, args, env in (
        ("--url", ["--url", url], {}),
        ("JOBQUEUE_URL", [], {"JOBQUEUE_URL": url}),
    ):
        r = jq("submit", "top_locations", "n=2", "--wait", *args, env=env, timeout=60)
        assert r.returncode == 2, (source, r.returncode, r.stderr)
        assert source in r.stderr and "cannot reach" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        for word in words:
            assert word.format(hostport=hostport) in r.stderr, r.stderr
    assert _job_count(stack) == before  # nothing was submitted


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/submit", "/ui/", "/help"])
def test_a_route_in_the_url_is_named_in_the_404(stack, path):
    """`--url http://127.0.0.1:5000/submit` (the submit URL the README's curl lines show) answered
    "404 not_found: no such route; GET /help lists them": the route was the URL's, not the user's."""
    url = stack.url + path
    r = jq("submit", "top_locations", "n=2", "--url", url, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "404 not_found" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (
        f"--url is the API's base URL, the one that answers /healthz: leave out {path!r} ({stack.url})" in r.stderr
    ), r.stderr


def test_an_answer_that_is_not_json_is_not_called_unreachable(flaky):  # noqa: F811  (the fixture)
    _, url = flaky
    _Flaky.plan, _Flaky.body = {}, b"<html>a web page, not the API</html>"
    r = jq("status", "abc", "--url", url, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "not with the API's JSON" in r.stderr and "cannot reach" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,words",
    [
        (["submit", "sleep", "seconds=0", "--wait", "--timeout", "-1"], ["--timeout", "0 or more"]),
        (["submit", "sleep", "seconds=0", "--wait", "--timeout", "nan"], ["--timeout", "0 or more"]),
        # 0 submitted the job, then gave up on it at once (exit 4, the job left queued)
        (["submit", "top_locations", "n=2", "--wait", "--timeout", "0"], ["--timeout", "above 0", "leave out --wait"]),
        (["submit", "top_locations", "n=2", "--timeout", "0.0"], ["--timeout", "above 0"]),
        (["submit", "sleep", "seconds=0", "--wait", "--output", "/nonexistent/dir/x.png"], ["cannot be written"]),
        (["submit", "sleep", "seconds=0", "--wait", "--output", "."], ["is a folder"]),
        (["status", "abc", "--wait", "-1"], ["--wait", "0 or more"]),
        (["watch", "abc", "--timeout", "-1"], ["--timeout", "0 or more"]),
        (["jobs", "--limit", "0"], ["--limit", "1 to 100"]),
        (["jobs", "--limit", "-1"], ["--limit", "1 to 100"]),
        (["jobs", "--limit", "101"], ["--limit", "1 to 100"]),
        (["jobs", "--operation", "top_location"], ["invalid_operation", "top_locations"]),  # was an empty list
    ],
)
def test_bad_values_are_refused_before_anything_is_submitted(stack, args, words):
    before = _job_count(stack)
    r = jq(*args, "--url", stack.url, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "submitted " not in r.stderr, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr
    assert _job_count(stack) == before


@pytest.mark.slow
def test_a_result_that_cannot_be_saved_names_the_job_and_where_it_is(stack):
    # /dev/full opens (so the check before submitting passes, as for root in a read-only folder)
    # and every write to it fails: the job has run, its result stays on the server
    r = jq("submit", "top_locations", "n=2", "--wait", "--output", "/dev/full", "--url", stack.url, timeout=120)
    assert r.returncode == 5, (r.returncode, r.stderr)
    job_id = r.stderr.split("submitted ", 1)[1].split()[0]
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    assert f"job {job_id} completed" in last and f"{stack.url}/jobs/{job_id}/result" in last, last


@pytest.mark.slow
def test_a_png_whose_default_file_cannot_be_written_is_refused_before_submitting(stack, tmp_path):
    """The default <job_id>.png of a plot (the API's /operations says ``"result": "image/png"``) in a
    folder that cannot be written: the job used to run, then exit 5; now exit 2, nothing submitted."""

    def run(cwd, *args):
        argv = [str(BIN / "jobqueue"), "submit", *args, "--wait", "--url", stack.url]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, env=dict(os.environ))

    before = _job_count(stack)
    p = run("/proc", "plot_top_locations", "n=2")  # a folder no one, root included, creates files in
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    assert "plot_top_locations makes a PNG" in p.stderr and "/proc" in p.stderr and "--output" in p.stderr, p.stderr
    assert "submitted" not in p.stderr and _job_count(stack) == before
    ok = run("/proc", "top_locations", "n=2")  # a JSON result is printed: the folder does not matter
    assert ok.returncode == 0 and "top_locations" in ok.stdout, ok.stderr
    saved = run(tmp_path, "plot_top_locations", "n=2")  # a folder that can be written: saved there
    assert saved.returncode == 0, saved.stderr
    assert [f.suffix for f in tmp_path.iterdir()] == [".png"], list(tmp_path.iterdir())


def test_analyze_checks_its_output_before_running(tmp_path):
    r = jq(
        "analyze", "top_locations", "n=1", "--output", "/nonexistent/dir/x.json", env={"DATA_CACHE_DIR": str(tmp_path)}
    )
    assert r.returncode == 2 and "cannot be written" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,said",
    [
        (
            ["submit", "top_locations", "--n", "5"],
            "jobqueue submit: error: parameters are key=value, not options: write n=5",
        ),
        (["submit", "top_locations", "--n=5", "--wait"], "parameters are key=value, not options: write n=5"),
        (["submit", "incidents_by_road", "--road", "S CONGRESS"], "write 'road=S CONGRESS'"),
        (["submit", "top_locations", "n=5", "--wait", "--timout", "30"], "unrecognized arguments: --timout 30"),
        (["submit", "top_locations", "n=5", "--wiat"], "jobqueue submit: error: unrecognized arguments: --wiat"),
        (["status", "abc", "--bogus", "1"], "jobqueue status: error: unrecognized arguments: --bogus 1"),
        (["submit", "top_locations", "-n5"], "parameters are key=value, not options: write n=5 (got -n5)"),
        # another command's option is named so: "write format=json" was then an unknown parameter
        (["submit", "top_locations", "n=5", "--format", "json"], "jobqueue submit has no --format option (cancel,"),
        (["submit", "top_locations", "n=5", "--json"], "jobqueue submit has no --json option"),
    ],
)
def test_a_parameter_written_as_an_option_is_named_as_key_value(stack, args, said):
    """`jobqueue submit top_locations --n 5` said only "jobqueue: error: unrecognized arguments: --n 5"
    under the top-level usage, with no word on how parameters are written; a mistyped option of the
    command (--timout) is still called unrecognized, under the command's own usage."""
    before = _job_count(stack)
    r = jq(*args, "--url", stack.url, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert said in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f"usage: jobqueue {args[0]} " in r.stderr, r.stderr
    if "--timout" in args or "--json" in args or "--format" in args:
        assert "not options" not in r.stderr and "format=" not in r.stderr, r.stderr
    assert _job_count(stack) == before


def test_analyze_takes_a_parameter_written_as_an_option_for_key_value():
    r = jq("analyze", "top_locations", "-n", "5", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "jobqueue analyze: error: parameters are key=value, not options: write n=5 (got -n 5)" in r.stderr


def test_output_without_wait_is_refused_before_anything_is_sent(capsys):
    """`submit top_locations n=2 --output top.json` submitted the job, printed its id and exited 0:
    --output is used only by --wait, so nothing was ever saved and nothing said so."""
    from jobqueue.cli import main

    code = main(["submit", "top_locations", "n=2", "--output", "top.json", "--url", "http://127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err  # 3 (unreachable) would mean it tried to submit
    assert err.startswith("jobqueue: --output saves the result, which only --wait waits for: add --wait"), err


@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_ctrl_c_while_the_submit_is_sent_says_the_job_may_be_stored(capsys, monkeypatch, wait):
    """Ctrl-C during `submit --wait`'s first exchange (the API holds its answer up to 2 s, the job
    already stored) said only "interrupted": no id, nothing about a stored job, so the student
    submitted again and had two jobs."""
    from jobqueue.cli import main
    from jobqueue.client import Client

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "operations", lambda self: [])
    monkeypatch.setattr(Client, "_submit_waiting", interrupted)
    code = main(["submit", "top_locations", "n=2", *wait, "--url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err, err
    assert "the job may have been stored" in err and "`jobqueue jobs`" in err, err
    monkeypatch.setattr(Client, "status", interrupted)  # a later Ctrl-C elsewhere is not called a submit
    code = main(["status", "x", "--url", "http://127.0.0.1:9"])
    assert code == 130 and capsys.readouterr().err.strip() == "jobqueue: interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "watch", "cancel"])
@pytest.mark.parametrize("suffix", ["/result", "?wait=1", "#x", "%2F", " x", "/..", "/../../jobs"])
def test_a_job_id_is_one_path_segment_whatever_it_holds(stack, command, suffix):
    """Ids went into the URL path as typed: `jobqueue status '<id>/result'` reached another route ("404
    no such route"), `cancel` of it a 405, and `status '<id>?wait=1'` answered the job <id> itself.
    Escaped, the API judges the id as given: not a job id, exit 2."""
    job_id = json.loads(jq("submit", "sleep", "seconds=0", "--url", stack.url, timeout=60).stdout)["job_id"]
    extra = ["--timeout", "5"] if command == "watch" else []
    r = jq(command, job_id + suffix, *extra, "--url", stack.url, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "invalid_job_id" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.strip() in ("", "[]"), r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("source", ["--url", "JOBQUEUE_URL"])
def test_why_the_api_cannot_be_reached_is_said(stack, source):
    """A host name that does not resolve and https:// at the API's plain-HTTP port both said "cannot
    reach the API ... is it running (make up)?", as a refused connection does: the API was running."""
    port = _hostport(stack).rsplit(":", 1)[1]
    cases = [
        (f"http://no-such-host.invalid:{port}", ["the host name 'no-such-host.invalid' was not found (DNS)"]),
        (
            f"https://127.0.0.1:{port}",
            [f"the server at 127.0.0.1:{port} does not speak TLS (https://)", f"http://127.0.0.1:{port}"],
        ),
    ]
    for url, words in cases:
        args, env = (["--url", url], {}) if source == "--url" else ([], {"JOBQUEUE_URL": url})
        r = jq("status", "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f", *args, env=env, timeout=60)
        assert r.returncode == 3, (url, r.returncode, r.stderr)
        assert "is it running" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and source in r.stderr, r.stderr
        for word in words:
            assert word in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "watch", "cancel"])
@pytest.mark.parametrize("job_id", ["", "  "])
def test_an_empty_job_id_is_usage_not_no_such_route(stack, command, job_id):
    """`jobqueue status "$JOB"` with JOB unset asked for /status/: "404 no such route", and `cancel`
    said "/jobs/ ends in '/'; the route is /jobs", as if the id were a typo in the route."""
    r = jq(command, job_id, "--url", stack.url, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "the job id is empty" in r.stderr and "route" not in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """Another service on the API's port: `python -m http.server`, as a student may have left running."""
    import socket
    import sys
    import time

    from devstack.stack import free_port

    port = free_port()
    folder = tmp_path_factory.mktemp("web")
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    "args",
    [["status", "x"], ["jobs"], ["info"], ["watch", "x", "--timeout", "5"], ["cancel", "x", "y"], ["submit", "sleep"]],
)
def test_another_web_server_at_the_url_is_said_to_be_so(web_server, args):
    """`python -m http.server` on the port: its HTML 404 page (a 501 for DELETE) was printed whole, as
    "jobqueue: 404 http_error: <!DOCTYPE HTML>...", and the status was 2 (usage), 3 for cancel."""
    r = jq(*args, "--url", web_server, timeout=60)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{web_server} answered" in r.stderr and "not with the API's JSON" in r.stderr, r.stderr
    assert "<" not in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_that_is_not_there_is_usage_not_a_traceback(stack, name, tmp_path):
    """REQUESTS_CA_BUNDLE=/a/typo with an https:// URL ended in requests' OSError "Could not find a
    suitable TLS CA certificate bundle", a traceback and exit 1."""
    missing = str(tmp_path / "no-such-ca.pem")
    env = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", name: missing}
    url = stack.url.replace("http://", "https://")
    r = jq("status", "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f", "--url", url, env=env, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"{name} '{missing}' does not exist" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_a_url_that_cannot_work_is_not_retried_for_15_seconds(stack):
    """A host name that does not exist and https:// at the API's plain-HTTP port were tried five times
    with backoff, as a refused connection is (the API may be restarting): 16 s of silence before the
    message, for an answer that could not change."""
    import time

    port = _hostport(stack).rsplit(":", 1)[1]
    for url in (f"http://no-such-host.invalid:{port}", f"https://127.0.0.1:{port}"):
        started = time.monotonic()
        r = jq("status", "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f", "--url", url, timeout=60)
        took = time.monotonic() - started
        assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
        assert took < 8, (url, took, r.stderr)


@pytest.mark.slow
def test_a_closed_stdout_is_refused_before_a_job_is_submitted(stack):
    """`jobqueue submit top_locations n=2 >&-` queued the job, printed its id nowhere (Python leaves
    sys.stdout None) and ended in an AttributeError traceback at the final flush, exit 1."""
    before = _job_count(stack)
    r = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', str(BIN / "jobqueue"), "submit", "top_locations", "n=2", "--url", stack.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "standard output is closed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _job_count(stack) == before


@pytest.fixture
def mute_server():
    """A server that accepts connections and then, as asked: never answers, or closes at once (as a
    TLS server does on reading plain HTTP)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    mode = {"close": False}

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if mode["close"]:
                conn.recv(65536)
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", mode
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("close", [False, True])
def test_a_server_that_does_not_answer_is_not_called_not_running(mute_server, close):
    """A server that accepted the connection and never answered (or closed it unanswered) was "cannot
    reach the API ... (ConnectionError); is it running (make up)?": it was running."""
    url, mode = mute_server
    mode["close"] = close
    r = jq("status", "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f", "--url", url, timeout=90)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "is it running" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    said = "closed the connection without an answer" if close else "accepted the connection but did not answer"
    assert said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_output_dash_is_standard_output(stack, tmp_path):
    """`submit ... --wait -o -` (standard output, as curl -o - takes it) saved a file named "-" in
    the current folder and printed "saved -"."""
    for operation, start in (("top_locations", b"{"), ("plot_top_locations", b"\x89PNG")):
        r = subprocess.run(
            [str(BIN / "jobqueue"), "submit", operation, "n=2", "--wait", "-o", "-", "--url", stack.url],
            capture_output=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(start) and b"saved" not in r.stderr, r.stderr
        assert not (tmp_path / "-").exists()
        if operation == "top_locations":
            assert len(json.loads(r.stdout)["top_locations"]) == 2
