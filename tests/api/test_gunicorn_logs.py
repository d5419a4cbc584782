"""gunicorn's own lines are JSON on stdout, like the app's: the README promises "logs are JSON lines
on stdout", and before this gunicorn wrote plain text (``[INFO] Starting gunicorn``) to stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import requests

from devstack.paths import BIN, SAMPLE
from devstack.procs import free_port, wait_until

pytestmark = pytest.mark.slow


def _serve(tmp_path, redis_url: str, level: str) -> tuple[str, str]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "REDIS_URL": redis_url,
        "DATA_PATH": str(SAMPLE),
        "DATA_CACHE_DIR": str(tmp_path / "cache"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{level}"),
        "LOG_LEVEL": level,
    }
    out, err = tmp_path / f"out-{level}", tmp_path / f"err-{level}"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([str(BIN / "jobqueue-api")], env=env, stdout=o, stderr=e, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(url + "/healthz"), 60, "the API")
        requests.get(url + "/nope", timeout=5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return out.read_text(), err.read_text()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_gunicorn_lines_are_json_on_stdout(tmp_path, redis_url):
    out, err = _serve(tmp_path, redis_url, "INFO")
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line parses
    gunicorn = [d["msg"] for d in lines if d["logger"] == "gunicorn.error"]
    assert any(m.startswith("Starting gunicorn") for m in gunicorn), gunicorn
    assert any(m.startswith("Booting worker") for m in gunicorn) and "Shutting down: Master" in gunicorn
    assert not any(d["logger"] == "gunicorn.access" for d in lines)  # one line per request: off
    assert "gunicorn" not in err and "[INFO]" not in err, err


def test_access_lines_at_debug_are_json_too(tmp_path, redis_url):
    out, _ = _serve(tmp_path, redis_url, "DEBUG")
    access = [d for d in map(json.loads, filter(str.strip, out.splitlines())) if d["logger"] == "gunicorn.access"]
    assert any('"GET /nope HTTP/1.1" 404' in d["msg"] for d in access), access


def test_the_app_heap_is_frozen_in_the_master_before_the_workers_fork(tmp_path, redis_url):
    """jobqueue.heap: the master freezes what loading the app built, then forks, so neither worker
    process's collector ever scans (or copies) that heap; a freeze after the fork would show as one
    line per worker process, after its "Booting worker"."""
    out, _ = _serve(tmp_path, redis_url, "INFO")
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    msgs = [d["msg"] for d in lines]
    frozen = [d for d in lines if d["msg"] == "start-up heap frozen"]
    assert len(frozen) == 1 and frozen[0]["logger"] == "jobqueue.api", frozen
    assert frozen[0]["frozen_objects"] > 10_000  # Flask, the routes, redis-py, prometheus_client, ...
    booting = next(i for i, m in enumerate(msgs) if m.startswith("Booting worker"))
    assert msgs.index("start-up heap frozen") < booting, msgs


@pytest.mark.parametrize("level", ["warn", "WARN", "Critical", "fatal", "error"])
def test_every_level_name_logging_knows_starts_the_api(tmp_path, redis_url, level):
    """LOG_LEVEL=WARN and CRITICAL (names Python's logging knows, as do lower-case ones) stopped the
    API as if they were garbage; now they start it, and nothing below the level is written."""
    out, err = _serve(tmp_path, redis_url, level)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert not [d for d in lines if d["level"] in ("info", "debug")], lines[:5]
    assert "configuration error" not in err, err


def test_a_level_logging_does_not_know_stops_the_api_naming_it(tmp_path, redis_url):
    env = {**os.environ, "REDIS_URL": redis_url, "LOG_LEVEL": "verbose", "DATA_PATH": str(SAMPLE)}
    out = subprocess.run([str(BIN / "jobqueue-api")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
