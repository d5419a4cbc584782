"""Peak memory of the data loader by input format: the same rows as CSV, SODA JSON and the
portal's JSON export (``rows.json``).

    .venv/bin/python bench/bench_loader_formats.py [--rows 432444] [--repeats 2]

Each run is the chart's loader as it runs in the API pod's load-data init container: a fresh
process running ``jobqueue data fetch --from <file> --output <volume>/traffic_incidents.csv`` with
the parsed cache written onto the volume (``DATA_CACHE_MODE=readwrite``). Its peak RSS is the
kernel's ``ru_maxrss`` of that child (``os.wait4``), which is what the container's memory limit
must hold. Formats alternate within one run (A/B/C, A/B/C...), so a busy machine slows all alike;
the figures are per-format medians, and ratios to CSV in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOBQUEUE = Path(sys.executable).with_name("jobqueue")
FORMS = {"csv": "csv", "soda-json": "soda.json", "rows-json": "rows.json"}


def dataset(rows: int, form: str, folder: Path) -> Path:
    """The synthetic rows (seed 332, as `make data`) in ``form``, written once into ``folder``."""
    from atx_analysis.generator import write_csv

    name = "traffic_incidents" if rows == 432_444 else f"traffic_incidents_{rows}"
    path = folder / f"{name}.{FORMS[form]}"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        write_csv(path, rows=rows, form=form)
    return path


def load_once(source: Path, how: str) -> tuple[float, float]:
    """Run the loader on ``source`` into an empty volume (``how`` "loader"), or only parse it with
    no cache ("parse": `jobqueue data info`, what a pod without a cache does): (peak RSS in MB, wall s)."""
    volume = Path(tempfile.mkdtemp(prefix="loader-volume-"))
    env = {**os.environ, "DATA_CACHE_DIR": str(volume / "cache"), "DATA_CACHE_MODE": "readwrite"}
    cmd = [str(JOBQUEUE), "data", "fetch", "--from", str(source), "--output", str(volume / "traffic_incidents.csv")]
    if how == "parse":
        env["DATA_CACHE_MODE"] = "off"
        cmd = [str(JOBQUEUE), "data", "info", "--data", str(source)]
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
        return usage.ru_maxrss / 1024, wall
    finally:
        shutil.rmtree(volume, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=432_444, help="rows of the synthetic dataset")
    parser.add_argument("--repeats", type=int, default=2, help="loads of each format (median)")
    parser.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, of {', '.join(FORMS)}")
    parser.add_argument("--dir", type=Path, default=REPO / "data" / "full", help="where the input files are kept")
    args = parser.parse_args(argv)
    forms = args.forms.split(",")
    files = {form: dataset(args.rows, form, args.dir) for form in forms}
    hows = ("loader", "parse")
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {(f, h): [] for f in forms for h in hows}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for how in hows:
            for form in forms:
                runs[form, how].append(load_once(files[form], how))
                load.append(os.getloadavg()[0])
    print(f"\n{args.rows:,} rows, median of {args.repeats}, load average {min(load):.1f}-{max(load):.1f}")
    print("| input | file | loader peak RSS | vs CSV | wall | parse only (no cache) | vs CSV | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for form in forms:
        cells = [form, f"{files[form].stat().st_size / 1e6:.0f} MB"]
        for how in hows:
            peak = statistics.median(r[0] for r in runs[form, how])
            base = statistics.median(r[0] for r in runs[forms[0], how])
            wall = statistics.median(r[1] for r in runs[form, how])
            cells += [f"{peak:.0f} MB", f"{peak / base:.2f}x", f"{wall:.1f} s"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
