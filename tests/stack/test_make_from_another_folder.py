"""`make -C <checkout> up|observe|down RUN_DIR=myrun` typed in another folder: relative paths are that
folder's. They were the checkout's, so the banner's `RUN_DIR=myrun make down` failed where it was
typed (no Makefile there), and so did its `.venv/bin/jobqueue` commands."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from devstack.make_env import stack_env
from devstack.paths import REPO_ROOT
from devstack.prometheus_server import find_prometheus
from tests.support.local_stack import all_gone, stack_pids

MAKE_UP_VARIABLES = ("RUN_DIR", "PORT", "REDIS_PORT", "WORKER_METRICS_BASE", "PROMETHEUS_PORT", "REDIS_EXPORTER_PORT")


def _typed(command: str, folder, env) -> subprocess.CompletedProcess[str]:
    """``command`` as typed at a shell prompt in ``folder`` (the shell sets PWD, as a terminal's does)."""
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def _line_after(prefix: str, out: str) -> str:
    [line] = [line.split(prefix, 1)[1] for line in out.splitlines() if line.startswith(prefix)]
    return line


@pytest.mark.slow
def test_up_observe_and_down_from_another_folder_use_that_folders_run_dir(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "data" / "traffic_incidents_sample.csv", home / "mine.csv")
    name = f"run-{tmp_path.name}"  # a folder of that name in the checkout would be the old reading
    env = stack_env("unused", prometheus=True, WORKERS="1")
    del env["RUN_DIR"]
    make = f"make -C {shlex.quote(str(REPO_ROOT))}"
    run_dir = home / name
    try:
        up = _typed(f"{make} up RUN_DIR={name} DATA_PATH=mine.csv DATA_CACHE_DIR=cache", home, env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert (run_dir / "pids" / "api.pid").is_file(), up.stdout
        assert not (REPO_ROOT / name).exists()
        assert f"logs in {run_dir}/logs" in up.stdout, up.stdout

        # the banner's client command works where it was printed, against this stack's data file
        [submit] = [line.strip() for line in up.stdout.splitlines() if "jobqueue submit" in line]
        job = _typed(submit, home, env)
        assert job.returncode == 0 and '"incident_count"' in job.stdout, job.stdout + job.stderr
        assert list((home / "cache").glob("mine.csv.*.arrow")), list(home.rglob("*"))

        if find_prometheus() is not None:
            # observe finds the running stack in the same folder and adds its Prometheus there
            observe = _typed(f"{make} observe RUN_DIR={name}", home, env)
            assert observe.returncode == 0, observe.stdout + observe.stderr
            assert "api already running" in observe.stdout, observe.stdout
            assert (run_dir / "pids" / "prometheus.pid").is_file()
            hint = _line_after("Stop everything with: ", observe.stdout)
        else:
            hint = _line_after("Stop it with: ", up.stdout)

        # the printed stop command, typed in the same folder without make up's variables, stops it all
        pids = stack_pids(run_dir)
        shell_env = {k: v for k, v in env.items() if k not in MAKE_UP_VARIABLES}
        down = _typed(hint, home, shell_env)
        assert down.returncode == 0, hint + down.stdout + down.stderr
        assert pids and all_gone(pids), hint
    finally:
        _typed(f"{make} down RUN_DIR={name}", home, env)


@pytest.mark.parametrize(
    "command",
    ["make -C {repo} down RUN_DIR=myrun", "RUN_DIR=myrun make -C {repo} down", "make -k -C {repo} down RUN_DIR=myrun"],
)
def test_make_down_from_another_folder_looks_in_that_folder(tmp_path, command):
    """The make variable and the environment variable alike, with other options given too."""
    down = _typed(command.format(repo=shlex.quote(str(REPO_ROOT))), tmp_path, dict(os.environ))
    assert down.returncode == 0, down.stderr
    assert f"nothing to stop under {tmp_path}/myrun " in down.stdout, down.stdout
    # and names the command as it works where it was typed
    assert f"RUN_DIR=<dir> make -C {REPO_ROOT} down" in down.stdout, down.stdout


def test_a_program_starting_make_in_the_checkout_reads_relative_paths_from_it(tmp_path):
    """A program that starts make in the checkout without a shell leaves its own PWD in the
    environment: that folder is not where make runs, and a relative RUN_DIR stays the checkout's."""
    # not started by make: under `make test` the environment says it is (MAKEFLAGS has the w that
    # a make started inside make turns on, as -C does), and the Makefile then believes PWD
    outside_make = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env = {**outside_make, "PWD": str(tmp_path)}
    down = subprocess.run(
        ["make", "down", "RUN_DIR=myrun"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stderr
    assert f"nothing to stop under {REPO_ROOT}/myrun " in down.stdout, down.stdout
