"""prometheus-client's multiprocess directory, as the API and the worker supervisor prepare it.

Both point ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temp dir when unset) at a directory and clear a
previous run's metric files from it before the first child writes. Only those files
(``<kind>_<pid>.db``): the directory is the user's choice and may hold anything else (``.``, a
run directory with pid files and logs), which both once deleted, recursively.
"""

from __future__ import annotations

import os
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(prefix: str) -> str:
    """Create the directory or clear its stale metric files; set and return it. Must run before
    prometheus_client is imported (it reads the variable then)."""
    path = os.environ.get(ENV) or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        target = os.path.join(path, entry)
        if entry.endswith(".db") and os.path.isfile(target) and not os.path.islink(target):
            os.unlink(target)
    os.environ[ENV] = path
    return path
