"""``pip install ./shared/core`` (from a checkout) is the client: no pandas, pyarrow or matplotlib, and it works.

A fresh virtual environment gets core's locked runtime dependencies (``uv export`` of the lock, no
extras) and core itself, nothing else. Then ``jobqueue submit --help`` works, the analysis commands
say which extra they need, and the client submits a job to a real API and waits for its result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.paths import REPO_ROOT
from devstack.redis_server import find_redis_server
from devstack.stack import running_stack

pytestmark = pytest.mark.slow

HEAVY = ("pandas", "pyarrow", "matplotlib", "numpy")


def _uv() -> str:
    found = shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("no uv (make setup installs it)")
    return found


def _run(argv: list, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{argv}: {done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    uv, tmp = _uv(), tmp_path_factory.mktemp("client-install")
    requirements = tmp / "requirements.txt"
    _run(
        [
            uv,
            "export",
            "--frozen",
            "--package",
            "atx-jobqueue-core",
            "--no-dev",
            "--no-emit-workspace",
            "--no-hashes",
            "-o",
            requirements,
        ],
        cwd=REPO_ROOT,
    )
    venv = tmp / "venv"
    _run([uv, "venv", "-q", "--python", sys.executable, venv])
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "-q", "--python", python, "-r", requirements])
    _run([uv, "pip", "install", "-q", "--python", python, "--no-deps", REPO_ROOT / "shared" / "core"])
    return venv


def test_the_lock_gives_core_no_analysis_stack(client_venv):
    installed = _run([_uv(), "pip", "list", "--python", client_venv / "bin" / "python", "--format", "freeze"]).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    assert "atx-jobqueue-core" in names and "requests" in names
    assert not names & {*HEAVY, "atx-analysis", "flask", "gunicorn"}, sorted(names)
    probe = f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])"
    assert _run([client_venv / "bin" / "python", "-c", probe]).stdout.strip() == "[]"


def test_submit_help_works_and_analysis_commands_name_the_extra(client_venv):
    jobqueue = client_venv / "bin" / "jobqueue"
    assert "--wait" in _run([jobqueue, "submit", "--help"]).stdout
    _run([client_venv / "bin" / "python", "-c", "import jobqueue.client, jobqueue.client_cli"])
    missing = subprocess.run(
        [str(jobqueue), "analyze", "top_locations", "n=3"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    # the command the README gives, which works from a checkout; it said
    # `pip install 'atx-jobqueue-core[analysis]'`, which no index can satisfy (atx-analysis is on none)
    hint = "pip install ./shared/analysis './shared/core[analysis]'"
    assert hint in missing.stderr
    assert hint in " ".join((REPO_ROOT / "README.md").read_text().split())


def test_the_client_alone_submits_and_waits_for_a_result(client_venv, tmp_path):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1)
        stack.start_worker()
        done = subprocess.run(
            [str(client_venv / "bin" / "jobqueue"), "submit", "sleep", "seconds=0", "--wait", "--url", stack.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"slept": 0.0}
    assert "complete" in done.stderr
