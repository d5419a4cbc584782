"""Every command the docs tell a user to run, piped into a reader that leaves early (``| head``):
it stops quietly with 141, as a Unix tool does on SIGPIPE. ``python -m
observability.simulate_autoscaling ... | head`` and ``scripts/personalize-k8s ... | head -1``
ended in a BrokenPipeError traceback (status 1). The ``jobqueue`` command's own cases are in
tests/core/test_cli.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _cut_short(cmd: list[str]) -> tuple[int, str]:
    """Runs ``cmd`` with its standard output a pipe whose reader is gone before it writes (closed at
    once, so the outcome does not depend on timing); its status and standard error."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


@pytest.mark.parametrize(
    "args",
    [
        # docs/autoscaling.md's second command, as given there
        [
            "-m",
            "observability.simulate_autoscaling",
            "--jobs",
            "1000",
            "--job-seconds",
            "0.02",
            "--sweep",
            "--min-replicas",
            "0",
            "--plot",
            "",
        ],
        ["-m", "observability.dashboard", "--check"],  # docs/observability.md
    ],
    ids=["simulate_autoscaling", "dashboard"],
)
def test_module_cut_short_stops_quietly(args: list[str]) -> None:
    status, err = _cut_short([PY, *args])
    assert status == 141 and "Traceback" not in err and "Exception ignored" not in err, err


def test_personalize_k8s_cut_short_stops_quietly(tmp_path: Path) -> None:
    """Run as docs/first-install.md runs it (its own ``python3``), on a copy of k8s/ (``--dir``)."""
    shutil.copytree(REPO_ROOT / "k8s", tmp_path / "k8s")
    status, err = _cut_short(
        [str(REPO_ROOT / "scripts" / "personalize-k8s"), "alice", "docker.io/alice", "--dir", str(tmp_path / "k8s")]
    )
    assert status == 141 and "Traceback" not in err, err
    # the edits were made before the output was cut short
    assert '"alice-atx-jobqueue-test.' in (tmp_path / "k8s" / "test" / "app-test-ingress-api.yml").read_text()
