"""The targets list that ``make bench`` gathers from every section of docs/benchmarks.md, and its
command line."""

import os
import subprocess
import sys

from bench import run_all
from devstack.paths import REPO_ROOT

DOC = """\
## Targets
<!-- bench:targets -->
| own table | 1x | PASS |
<!-- /bench:targets -->

## API
| target | measured | verdict |
| --- | --- | --- |
| submit throughput at least 0.8x bare Flask | 0.56x | MISS |

## Worker drain
- No-op drain ours >= 1.0x the raw loop: PASS (1.65x)

## Why targets are missed
A paragraph of prose that wraps after a figure, 23% at 4.3M rows (PASS), and goes
on to explain it; none of it is a target line.
"""


def test_rows_and_items_are_gathered_under_their_section():
    lines = run_all.gather_targets(DOC).splitlines()
    assert lines == [
        "- API: submit throughput at least 0.8x bare Flask · 0.56x · MISS",
        "- Worker drain: No-op drain ours >= 1.0x the raw loop: PASS (1.65x)",
    ]


def test_prose_and_the_targets_section_itself_are_left_out():
    gathered = run_all.gather_targets(DOC)
    assert "own table" not in gathered
    assert "paragraph" not in gathered and "23%" not in gathered


def test_a_tables_before_column_is_left_out_and_long_cells_are_cut():
    long_history = "figure after figure, " * 40
    doc = (
        "## Why targets are missed\n\n"
        "| target | before | latest (run, load) | verdict |\n"
        "|---|---|---|---|\n"
        f"| drain vs raw (>= 1.0x) | 0.76x | 4.58x (15:15, load 0.6) | PASS |\n"
        f"| round trip vs Celery | 6.1 ms | {long_history} | MISS |\n"
    )
    lines = run_all.gather_targets(doc).splitlines()
    assert lines[0] == "- Why targets are missed: drain vs raw (>= 1.0x) · 4.58x (15:15, load 0.6) · PASS"
    assert "0.76x" not in lines[0] and "6.1 ms" not in lines[1]
    assert lines[1].endswith(" … · MISS") and len(lines[1]) < run_all.MAX_CELL + 80


def test_make_bench_writes_a_document_outside_the_checkout(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "benchmarks.md"
    monkeypatch.setattr(run_all.report, "DOC", doc)  # what BENCH_DOC sets at import
    monkeypatch.setenv("BENCH_ONLY", "no-such-script")  # no benchmark runs: intro, machine, targets
    assert run_all.main([]) == 0
    text = doc.read_text()
    assert "<!-- bench:intro -->" in text and "<!-- bench:machine -->" in text and "Interpreter: " in text
    assert f"report: {doc}" in capsys.readouterr().out


# `python -m bench.run_all --help` printed nothing of the kind: it read no command line, so it ran
# every benchmark and rewrote docs/benchmarks.md. It now answers --help, and refuses a word it does
# not know (exit 2), before writing anything.


def _run_all(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    # BENCH_ONLY names no script and BENCH_DOC is the test's own: without the fix this writes only there
    env = {**os.environ, "BENCH_ONLY": "no-such-bench", "BENCH_DOC": str(tmp_path / "benchmarks.md")}
    return subprocess.run(
        [sys.executable, "-m", "bench.run_all", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_is_help_and_runs_nothing(tmp_path):
    done = _run_all(tmp_path, "--help")
    assert done.returncode == 0 and "usage: python -m bench.run_all" in done.stdout, done.stdout + done.stderr
    assert "BENCH_ONLY" in done.stdout
    assert not (tmp_path / "benchmarks.md").exists()


def test_an_unknown_argument_is_refused_before_anything_runs(tmp_path):
    done = _run_all(tmp_path, "quick")
    assert done.returncode == 2 and "unrecognized arguments: quick" in done.stderr, done.stderr
    assert not (tmp_path / "benchmarks.md").exists()
