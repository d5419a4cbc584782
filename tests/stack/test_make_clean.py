"""`make clean` with a `make up` stack running under `.run`: it stops the stack before removing it.

It removed `.run` with the pid files in it, so the API, the workers and Redis went on running (their
ports held, Redis writing into a deleted folder) and `make down` said "nothing to stop"."""

from __future__ import annotations

import os
import subprocess

import pytest

from devstack.make_env import stack_env
from devstack.paths import REPO_ROOT
from tests.support.local_stack import all_gone, checkout_copy, stack_pids

pytestmark = pytest.mark.slow


def test_clean_stops_the_stack_it_removes(tmp_path):
    work = checkout_copy(tmp_path / "atx-jobqueue")
    env = stack_env(str(work / ".run"), WORKERS="1")
    up = subprocess.run(["bash", "scripts/up.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    pids = stack_pids(work / ".run")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert len(pids) == 3, pids  # redis, api, worker-1
        del env["RUN_DIR"]  # `make clean` as typed: the stack is the checkout's .run
        clean = subprocess.run(["make", "clean"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert all_gone(pids), f"make clean left the stack running: {clean.stdout}"
        assert "down: stopped api" in clean.stdout, clean.stdout
        assert not (work / ".run").exists() and not (work / ".venv").exists()
        assert (REPO_ROOT / ".venv" / "bin" / "python").exists()  # only the link went
    finally:
        for pid in pids:  # what a failed clean left behind
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, 9)
