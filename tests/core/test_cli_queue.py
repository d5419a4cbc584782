"""``jobqueue jobs``, ``info``, ``watch``, ``cancel`` and ``operations`` against the real API over
HTTP (the app served on a loopback port, a real Redis): tables for people, JSON for scripts."""

from __future__ import annotations

import json
import threading
import time

import pytest
from werkzeug.serving import make_server

from jobqueue import keys
from jobqueue.cli import main
from jobqueue.jobs import JobStatus
from tests.api.support import make_settings
from tests.api.support import finish


@pytest.fixture
def api(redis_url):
    from jobqueue_api import create_app

    settings = make_settings(redis_url, MAX_WAIT_SECONDS="5")
    app = create_app(settings, load_data=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    app.state = app.extensions["jobqueue"]
    yield app
    server.shutdown()


def _submit(api, seconds=0):
    with api.test_client() as c:
        return c.post("/submit", json={"operation": "sleep", "params": {"seconds": seconds}}).get_json()["job_id"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_jobs_table_and_json(api, capsys):
    first, second = _submit(api), _submit(api)
    finish(api.state.jobs, first, result={"slept": 0})
    code, out, _ = _run(capsys, "jobs", "--url", api.url, "--format", "table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["ID", "STATUS", "OPERATION"]
    assert lines[1].startswith(second[:8]) and "submitted" in lines[1]
    assert lines[2].startswith(first[:8]) and "complete" in lines[2] and "test-worker" in lines[2]
    code, out, _ = _run(capsys, "jobs", "--url", api.url, "--json", "--status", "complete")
    assert [j["job_id"] for j in json.loads(out)["jobs"]] == [first]
    code, out, _ = _run(capsys, "jobs", "--url", api.url)  # not a terminal: JSON
    assert len(json.loads(out)["jobs"]) == 2
    # more than --limit: the hint names what this command can do (it said "page with GET /jobs?cursor=")
    code, out, err = _run(capsys, "jobs", "--url", api.url, "--format", "table", "--limit", "1")
    assert code == 0 and len(out.splitlines()) == 2
    assert "(more: raise --limit, up to 100, or narrow with --status or --operation)" in err and "cursor" not in err


@pytest.fixture
def owned_api(redis_url):
    """Named tokens: alice and bob, and the admin token."""
    from jobqueue_api import create_app

    settings = make_settings(redis_url, API_TOKEN="admin-tok", API_TOKENS="alice:alice-tok,bob:bob-tok")
    app = create_app(settings, load_data=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    yield app
    server.shutdown()


def test_the_admin_jobs_table_says_whose_each_job_is(owned_api, capsys):
    """With named tokens the table has a USER column: the admin sees whose each job is (the owner
    was shown nowhere), a student their own name; without named tokens the columns are as before."""
    with owned_api.test_client() as c:
        for who in ("alice", "bob"):
            c.post("/submit", json={"operation": "sleep"}, headers={"Authorization": f"Bearer {who}-tok"})
    code, out, _ = _run(capsys, "jobs", "--url", owned_api.url, "--token", "admin-tok", "--format", "table")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["ID", "USER", "STATUS"], lines
    assert [line.split()[1] for line in lines[1:]] == ["bob", "alice"]
    code, out, _ = _run(capsys, "jobs", "--url", owned_api.url, "--token", "bob-tok", "--format", "table")
    assert out.splitlines()[1].split()[1:3] == ["bob", "submitted"]


def test_a_missing_or_refused_token_says_how_to_give_one(owned_api, capsys, monkeypatch):
    """The 401 line named only the HTTP header; a CLI user gives the token with --token or
    JOBQUEUE_TOKEN, and needs to know whether one was sent at all."""
    monkeypatch.delenv("JOBQUEUE_TOKEN", raising=False)
    code, _, err = _run(capsys, "jobs", "--url", owned_api.url)
    assert code == 2 and "no token given: pass yours with --token or JOBQUEUE_TOKEN" in err, err
    assert "Bearer <your token>" in err  # a student's own, not the admin's API_TOKEN
    code, _, err = _run(capsys, "jobs", "--url", owned_api.url, "--token", "guess")
    assert code == 2 and "the token given was refused" in err and "guess" not in err, err


def test_a_token_with_a_newline_around_it_is_the_token(owned_api, capsys, monkeypatch):
    """A token as a file holds it (``open("token").read()``, a Secret made ``--from-file``) ends in a
    newline, which no header can carry: the CLI died with a traceback (``ValueError: Invalid header
    value``) and exit status 1, "the job failed", and ``Client`` raised the same. The API keeps its
    own tokens without surrounding whitespace; the client now sends them so too."""
    from jobqueue.client import Client

    monkeypatch.setenv("JOBQUEUE_TOKEN", "alice-tok\n")
    code, out, err = _run(capsys, "submit", "sleep", "--url", owned_api.url)
    assert code == 0 and json.loads(out)["status"] == "submitted", err
    code, out, err = _run(capsys, "jobs", "--url", owned_api.url, "--token", " bob-tok\r\n", "--json")
    assert code == 0 and json.loads(out)["jobs"] == [], err
    assert [j["owner"] for j in Client(owned_api.url, token="alice-tok\n").jobs()] == ["alice"]


@pytest.mark.parametrize("where", ["--token", "JOBQUEUE_TOKEN"])
def test_a_token_with_a_line_break_inside_is_refused_as_usage(owned_api, capsys, monkeypatch, where):
    """Two lines pasted as one token cannot be sent in a header: exit 2 naming where it came from
    (never the token), before anything is sent, not a traceback."""
    monkeypatch.delenv("JOBQUEUE_TOKEN", raising=False)
    argv = ["jobs", "--url", owned_api.url]
    if where == "--token":
        argv += ["--token", "alice-tok\nbob-tok"]
    else:
        monkeypatch.setenv("JOBQUEUE_TOKEN", "alice-tok\nbob-tok")
    code, _, err = _run(capsys, *argv)
    assert code == 2 and where in err and "line break" in err, err
    assert "alice-tok" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("where", ["--token", "JOBQUEUE_TOKEN"])
@pytest.mark.parametrize("token", ['"alice-tok"', "'alice-tok'", '"alice-tok'])
def test_a_token_with_quotes_around_it_is_refused_as_usage(owned_api, capsys, monkeypatch, where, token):
    """JOBQUEUE_TOKEN="alice-tok" from an env file reaches the client with its quotes: every request
    was a 401, "the token given was refused", which does not say why. Exit 2 naming where it came
    from (never the token), before anything is sent."""
    monkeypatch.delenv("JOBQUEUE_TOKEN", raising=False)
    argv = ["jobs", "--url", owned_api.url]
    if where == "--token":
        argv += ["--token", token]
    else:
        monkeypatch.setenv("JOBQUEUE_TOKEN", token)
    code, _, err = _run(capsys, *argv)
    assert code == 2 and where in err and "begins or ends with a quote" in err, err
    assert "alice-tok" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_status_prints_the_job_as_json_with_or_without_json(api, capsys, extra):
    """``status <id> --json``, typed as jobs, info, watch and cancel take it, was "unrecognized
    arguments: --json" (exit 2): status always prints the job as JSON."""
    job_id = _submit(api)
    code, out, err = _run(capsys, "status", job_id, "--url", api.url, *extra)
    assert code == 0, err
    assert json.loads(out)["job_id"] == job_id and json.loads(out)["status"] == "submitted"


def test_info_like_rq_info(api, capsys):
    _submit(api)
    code, out, _ = _run(capsys, "info", "--url", api.url, "--format", "table")
    assert code == 0
    assert "1 waiting" in out and "workers: 0 alive" in out and "WARNING: the queue is stalled: no live worker" in out
    api.state.queue.zadd(keys.WORKERS_HEARTBEAT, {"vm:1:abc": time.time()})
    code, out, _ = _run(capsys, "info", "--url", api.url, "--format", "table")
    assert "workers: 1 alive" in out and "vm:1:abc" in out and "WARNING" not in out
    doc = json.loads(_run(capsys, "info", "--url", api.url, "--json")[1])
    assert doc["depth"] == 1 and doc["workers_alive"] == 1


def test_watch_follows_a_job_to_its_end(api, capsys):
    job_id = _submit(api)
    threading.Timer(1.0, lambda: finish(api.state.jobs, job_id, result={"slept": 0})).start()
    code, out, _ = _run(capsys, "watch", job_id, "--url", api.url, "--format", "table")
    assert code == 0
    assert "submitted" in out and out.rstrip().splitlines()[-2].startswith("complete")
    failed = _submit(api)
    finish(api.state.jobs, failed, status=JobStatus.FAILED, error="boom")
    code, out, _ = _run(capsys, "watch", failed, "--url", api.url, "--json")
    assert code == 1 and json.loads(out)["error"] == "boom"
    waiting = _submit(api)
    code, _, err = _run(capsys, "watch", waiting, "--url", api.url, "--timeout", "0.5")
    assert code == 4 and "still submitted" in err  # Exit.TIMEOUT


def test_cancel_a_queued_job(api, capsys):
    job_id = _submit(api)
    code, out, _ = _run(capsys, "cancel", job_id, "--url", api.url, "--format", "table")
    assert code == 0 and out.strip() == f"{job_id}: cancelled"
    code, out, _ = _run(capsys, "cancel", job_id, "--url", api.url, "--json")
    assert code == 0 and json.loads(out)["deleted"] is True
    code, _, err = _run(capsys, "cancel", job_id, "--url", api.url)
    assert code != 0 and "job_not_found" in err


def test_cancel_of_several_says_what_it_did_when_one_is_refused(api, capsys):
    # `cancel A nope B` (or A given twice) stopped at the first refusal with one line about it and
    # exit 2: A had been cancelled without a word, B never was
    first, second = _submit(api), _submit(api)
    code, out, err = _run(capsys, "cancel", first, "nope", first, second, "--url", api.url, "--format", "table")
    assert code == 2 and "Traceback" not in err
    assert out.splitlines() == [f"{first}: cancelled", f"{second}: cancelled"]
    assert err.strip() == f"jobqueue: nope: {err.split(': ', 2)[2].strip()}" and "invalid_job_id" in err
    code, out, err = _run(capsys, "cancel", first, second, "--url", api.url, "--json")
    assert code == 0 and [d["job_id"] for d in json.loads(out)] == [first, second]  # now deleted
    code, out, err = _run(capsys, "cancel", first, "--url", api.url, "--json")
    assert code == 2 and out == "" and "job_not_found" in err


def test_cancel_json_is_one_document_with_each_ids_answer(api, capsys):
    """`cancel x y --json` printed `[]` on stdout beside two errors on stderr: the document said
    nothing had been asked. It is now one list with an entry per id, a refusal as its error."""
    code, out, err = _run(capsys, "cancel", "x", "y", "--url", api.url, "--json")
    assert code == 2 and err == ""
    assert [(d["job_id"], d["error"]) for d in json.loads(out)] == [("x", "invalid_job_id"), ("y", "invalid_job_id")]
    job_id = _submit(api)
    code, out, err = _run(capsys, "cancel", job_id, "x", "--url", api.url, "--json")
    doc = json.loads(out)
    assert code == 2 and err == "" and doc[0]["job_id"] == job_id and doc[0]["cancelled"] is True
    assert doc[1]["job_id"] == "x" and "UUID4" in doc[1]["message"]
    down = "http://127.0.0.1:1"  # nothing listens: the command stops before sending anything
    code, out, err = _run(capsys, "cancel", job_id, "x", "--url", down, "--json")
    assert code == 3 and out == "" and "cannot reach the API" in err


def test_operations_is_a_readable_list_on_a_terminal(capsys):
    from atx_analysis.registry import REGISTRY

    code, out, _ = _run(capsys, "operations", "--format", "table")
    assert code == 0
    for op in REGISTRY:
        assert f"{op.name}  ->  " in out
    assert "e.g. jobqueue submit incidents_by_road 'road=" in out
    described = json.loads(_run(capsys, "operations")[1])  # piped: JSON, as before
    assert {d["name"] for d in described} == set(REGISTRY.names())
