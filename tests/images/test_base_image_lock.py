"""scripts/make-base-image.sh run twice at once on a new day: one debootstrap, not two.

Test sessions (and worktrees) starting together each found no tarball for the day and each ran
debootstrap, 15 minutes apiece on a loaded machine, then imported the same image name. The script
now takes a lock on its cache; the second run waits for it and then finds the tarball made.

debootstrap and buildah are stand-ins here (on PATH first): the stand-in debootstrap records each
run and waits for the test's go-ahead, so the test knows where each run is without timing anything.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devstack.paths import REPO_ROOT
from devstack.procs import children, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="make-base-image.sh needs root")

DEBOOTSTRAP = """#!/bin/sh
# the target directory is the argument after the suite
echo $$ >> "$MARKS/runs"
while [ ! -e "$MARKS/go" ]; do sleep 0.05; done
mkdir -p "$4/etc" "$4/usr/bin"
"""
BUILDAH = """#!/bin/sh
[ "$1" = from ] && echo ctr
exit 0
"""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_two_runs_at_once_make_the_day_s_root_filesystem_once(tmp_path):
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    marks.mkdir()
    for name, text in {"debootstrap": DEBOOTSTRAP, "buildah": BUILDAH}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ATX_CACHE_DIR": str(tmp_path / "cache"),
        "MARKS": str(marks),
        "STORAGE_DRIVER": "",
    }

    def run() -> subprocess.Popen:
        return subprocess.Popen(
            [str(REPO_ROOT / "scripts" / "make-base-image.sh")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def runs() -> list[str]:
        return (marks / "runs").read_text().split() if (marks / "runs").exists() else []

    first = run()
    second = None
    try:
        wait_until(lambda: len(runs()) == 1, 120, "the first run's debootstrap")
        second = run()
        # the second run is either waiting for the lock (a flock child) or in a debootstrap of its own
        wait_until(
            lambda: len(runs()) == 2 or any(_comm(c) == "flock" for c in children(second.pid)),
            120,
            "the second run to wait for the first or to start its own debootstrap",
        )
        (marks / "go").touch()
        outs = [p.communicate(timeout=120) for p in (first, second)]
    finally:
        (marks / "go").touch()
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip((first, second), outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "localhost/atx-jobqueue-base:bookworm", out
    assert len(runs()) == 1, f"debootstrap ran {len(runs())} times"
    assert len(list((tmp_path / "cache" / "base").glob("debian-bookworm-*-python3.tar.gz"))) == 1
