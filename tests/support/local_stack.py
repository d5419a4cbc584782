"""What the tests of ``make up`` as a user runs it share: a checkout of their own to run it in, the
processes it started, and waiting for them to be gone. Three tests had each their own copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from devstack.paths import REPO_ROOT


def checkout_copy(where: Path) -> Path:
    """The tracked files, as a newcomer's clone has them, with the real checkout's .venv and .tools
    linked in (so nothing is installed again; ``make clean`` removes only the links)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src, dst = REPO_ROOT / name, where / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for name in (".venv", ".tools"):
        (where / name).symlink_to(REPO_ROOT / name)
    return where


def stack_pids(run_dir: Path) -> list[int]:
    """The processes a ``make up`` (or ``make observe``) under ``run_dir`` says it started."""
    return [int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")]


def all_gone(pids: list[int], timeout: float = 60) -> bool:
    """Whether every one of ``pids`` has exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(os.path.exists(f"/proc/{pid}") for pid in pids)
