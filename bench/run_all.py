"""``make bench``: run every benchmark script that exists, then the machine section and a summary.

Each script is its own process (``python -m bench.<name>``) and writes its own section of
docs/benchmarks.md through :mod:`bench.report`; a script that fails is reported and the others
still run. ``BENCH_QUICK=1`` is passed through (each script shortens itself), and
``BENCH_ONLY=peers,api`` runs a subset. At the end the PASS/MISS lines of every section are
gathered into the "Targets" section, so one place says where the project stands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from bench import report

# (section, script, arguments of a full run, arguments of a quick run), in run order; each script
# writes its own section of docs/benchmarks.md when given these arguments
SCRIPTS = [
    ("deployed", "bench_deployed", ["--write"], ["--write"]),
    ("peers", "bench_peers", [], []),
    ("worker-drain", "bench_drain", ["--write-docs"], ["--jobs", "1000", "--repeats", "1", "--write-docs"]),
    ("api", "bench_api", ["--write"], ["--seconds", "2", "--repeats", "3", "--jobs", "100", "--write"]),
    ("analysis", "bench_analysis", ["--write"], ["--quick", "--write"]),
    ("memory", "bench_memory", ["--write"], ["--write"]),
]
OTHER_TARGETS_HEADING = "### Targets reported by the other sections"


def available(module: str) -> bool:
    return (report.REPO_ROOT / "bench" / f"{module}.py").exists()


def run(module: str, args: list[str]) -> tuple[int, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(report.REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    script = report.REPO_ROOT / "bench" / f"{module}.py"
    print("$ " + " ".join(["python", str(script.relative_to(report.REPO_ROOT)), *args]), flush=True)
    proc = subprocess.run([sys.executable, str(script), *args], cwd=report.REPO_ROOT, env=env)
    return proc.returncode, time.monotonic() - started


# a gathered cell longer than this is cut at a word (the full text stays in its own section): the
# list is a summary, and hand-written cells once grew to kilobytes of history here
MAX_CELL = 240


def _short(cell: str) -> str:
    if len(cell) <= MAX_CELL:
        return cell
    return cell[:MAX_CELL].rsplit(" ", 1)[0].rstrip(" ,;:(") + " …"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def gather_targets(text: str | None = None) -> str | None:
    """Table rows and list items saying PASS or MISS outside the "Targets" section.

    Only rows and items count: a wrapped line of prose that mentions PASS is half a sentence, and
    gathering it printed fragments into the targets list. Of a table, the target, the latest figure
    and the verdict are taken: a "before" column (the hand-written issue-13 table's) is left out,
    and any cell is cut to ``MAX_CELL`` characters.
    """
    if text is None:
        if not report.DOC.exists():
            return None
        text = report.DOC.read_text()
    text = report._pattern("targets").sub("", text)  # our own table is already there
    rows, heading, header = [], "", []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:].strip()
            continue
        stripped = line.strip()
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped.startswith("|") and re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", following):
            header = [h.lower() for h in _cells(stripped)]  # a table starts: remember its columns
            continue
        if not stripped.startswith("|"):
            header = []
        if not heading or not re.search(r"\b(PASS|MISS)\b", stripped):
            continue
        if stripped.startswith("|"):
            cells = _cells(stripped)
            if len(header) == len(cells):
                cells = [c for c, h in zip(cells, header) if not h.startswith("before")]
        elif stripped.startswith("- "):
            cells = [stripped[2:].strip()]
        else:
            continue
        rows.append(f"- {heading}: " + " · ".join(_short(c) for c in cells if c))
    return "\n".join(rows) if rows else None


def update_targets_section() -> None:
    own = report.read_section("targets") or "## Targets"
    own = own.split(OTHER_TARGETS_HEADING)[0].rstrip()
    others = gather_targets()
    body = own + ("\n\n" + OTHER_TARGETS_HEADING + "\n\n" + others if others else "")
    report.write_section("targets", body)


def main(argv: list[str] | None = None) -> int:
    # `python -m bench.run_all --help` ran every benchmark (most of an hour) and rewrote
    # docs/benchmarks.md: it read no command line at all. Its settings are environment variables.
    import argparse

    argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="BENCH_QUICK=1 for a short pass; BENCH_ONLY=peers,api for a subset; BENCH_DOC=<file> "
        "to write the report elsewhere than docs/benchmarks.md.",
    ).parse_args(argv)
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    status = []
    total = time.monotonic()
    report.write_section("intro", "# Benchmarks\n" + report.INTRO)
    report.write_section("machine", report.machine_markdown())
    for section, module, full_args, quick_args in SCRIPTS:
        if only and section not in only and module not in only:
            continue
        if not available(module):
            print(f"== bench/{module}.py: not present yet, skipped", flush=True)
            status.append((module, "absent", 0.0))
            continue
        print(f"== bench/{module}.py", flush=True)
        code, seconds = run(module, quick_args if report.quick() else full_args)
        status.append((module, "ok" if code == 0 else f"FAILED (exit {code})", seconds))
    update_targets_section()
    print("\n== make bench summary")
    for module, state, seconds in status:
        print(f"  {module:16} {state:20} {seconds:6.0f} s")
    doc = report.DOC.resolve()
    shown = (
        doc.relative_to(report.REPO_ROOT) if doc.is_relative_to(report.REPO_ROOT) else doc
    )  # BENCH_DOC may be elsewhere
    print(f"  total {time.monotonic() - total:.0f} s; report: {shown}")
    targets = report.read_section("targets")
    if targets:
        print("\n" + targets)
    return 0 if all(s in ("ok", "absent") for _, s, _ in status) else 1


if __name__ == "__main__":
    sys.exit(main())
