"""Worker processes of a benchmark run: started in their own process group, stopped by pid.

Each run's processes are started here and stopped here (SIGTERM to the group we created, then
SIGKILL after a grace period), so nothing outlives the run and nothing else is touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.procs import stop_all

from .dataset import REPO_ROOT

LOG_DIR = REPO_ROOT / ".run" / "bench" / "logs"


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn(argv: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    log = open(LOG_DIR / f"{log_name}.log", "wb")
    try:
        return subprocess.Popen(
            argv,
            env=full_env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM each run's process groups, SIGKILL what outlives ``grace`` (prefork pools too)."""
    stop_all(procs, grace)


def log_path(log_name: str) -> Path:
    return LOG_DIR / f"{log_name}.log"
