"""The API wipes stale metrics from PROMETHEUS_MULTIPROC_DIR at start, and only those: a user who
points it at a directory holding anything else (``.``, a run directory with pid files and logs)
must not lose it. It used to remove every entry, recursively."""

from __future__ import annotations

from jobqueue.multiproc import ENV as MULTIPROC_ENV
from jobqueue_api.serve import prepare_multiprocess_dir


def test_only_prometheus_files_are_removed(tmp_path, monkeypatch):
    for stale in ("counter_4242.db", "gauge_livesum_4242.db", "histogram_17.db"):
        (tmp_path / stale).write_bytes(b"stale from a previous run")
    (tmp_path / "api.pid").write_text("4242\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_text("kept\n")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))

    assert prepare_multiprocess_dir() == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.pid", "logs"]
    assert (tmp_path / "logs" / "api.log").read_text() == "kept\n"


def test_a_missing_directory_is_created(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    monkeypatch.setenv(MULTIPROC_ENV, str(target))
    assert prepare_multiprocess_dir() == str(target) and target.is_dir()
