"""Running the ``jobqueue`` command in the analysis tests: as a real subprocess (:func:`jq`), or
in this process through the ``inproc`` fixture (tests/analysis/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.paths import REPO_ROOT

JOBQUEUE = Path(sys.executable).parent / "jobqueue"


def jq(*args, cwd=REPO_ROOT, env=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DATA_PATH", None) if env is None else None
    return subprocess.run(
        [str(JOBQUEUE), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=120
    )
