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

# (section, module) in run order: the peers first (longest), then the others' scripts when present
SCRIPTS = [
    ("peers", "bench_peers"),
    ("worker-drain", "bench_drain"),
    ("api", "bench_api"),
    ("analysis", "bench_analysis"),
]
OTHER_TARGETS_HEADING = "### Targets reported by the other sections"


def available(module: str) -> bool:
    return (report.REPO_ROOT / "bench" / f"{module}.py").exists()


def run(module: str) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(report.REPO_ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}"], cwd=report.REPO_ROOT, env=env)
    return proc.returncode, time.monotonic() - started


def gather_targets() -> str | None:
    """Table rows with PASS or MISS from every section but "targets" itself."""
    doc = report.DOC
    if not doc.exists():
        return None
    text = doc.read_text()
    rows = []
    for name, body in re.findall(r"<!-- bench:([\w-]+) -->\n(.*?)\n<!-- /bench:\1 -->", text, re.S):
        if name == "targets":
            continue
        for line in body.splitlines():
            if line.startswith("|") and re.search(r"\b(PASS|MISS)\b", line):
                cells = [c.strip() for c in line.strip("|").split("|")]
                rows.append(f"- [{name}] " + " · ".join(cells))
    return "\n".join(rows) if rows else None


def update_targets_section() -> None:
    own = report.read_section("targets") or "## Targets"
    own = own.split(OTHER_TARGETS_HEADING)[0].rstrip()
    others = gather_targets()
    body = own + ("\n\n" + OTHER_TARGETS_HEADING + "\n\n" + others if others else "")
    report.write_section("targets", body)


def main() -> int:
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    status = []
    total = time.monotonic()
    report.write_section("machine", report.machine_markdown())
    for section, module in SCRIPTS:
        if only and section not in only and module not in only:
            continue
        if not available(module):
            print(f"== bench.{module}: not present yet, skipped", flush=True)
            status.append((module, "absent", 0.0))
            continue
        print(f"== bench.{module}", flush=True)
        code, seconds = run(module)
        status.append((module, "ok" if code == 0 else f"FAILED (exit {code})", seconds))
    update_targets_section()
    print("\n== make bench summary")
    for module, state, seconds in status:
        print(f"  {module:16} {state:20} {seconds:6.0f} s")
    print(f"  total {time.monotonic() - total:.0f} s; report: {report.DOC.relative_to(report.REPO_ROOT)}")
    targets = report.read_section("targets")
    if targets:
        print("\n" + targets)
    return 0 if all(s in ("ok", "absent") for _, s, _ in status) else 1


if __name__ == "__main__":
    sys.exit(main())
