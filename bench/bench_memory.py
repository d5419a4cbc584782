"""Memory and cold start of worker pods on one node (issue 13): do they share the parsed columns?

    .venv/bin/python bench/bench_memory.py [--rows 432444,4324440] [--workers 3] [--write]

For each data size, as the chart deploys it: the loader (`jobqueue data fetch --keep-existing`, as
the API pod's load-data init container runs it) parses the file once and writes the columnar cache
onto a directory standing for the data volume; then ``--workers`` separate worker processes are
started one after the other with the pods' `DATA_CACHE_MODE=readonly`, each as a worker pod runs:
the worker's own modules imported (Redis client, metrics, operations), the dataset loaded through
the worker's ``DataSource`` (memory-mapping the cache) and every operation run once, plots
included, so each has touched its whole working set, then garbage collected and freed memory handed
back to the kernel as the worker's housekeeping does every 10 s after jobs. With all of them alive, each process's
``/proc/<pid>/smaps_rollup`` gives RSS (everything mapped in, shared pages counted in full), PSS
(shared pages divided among the processes that map them) and USS (pages only this process maps:
what it alone adds to the node). The target: each extra process adds at most 25% of the first
one's RSS, i.e. its USS is at most a quarter of what one worker alone shows as RSS. For contrast,
one more worker parses the file itself (`DATA_CACHE_MODE=off`: what every pod did before the cache
moved onto the data volume, when each pod had its own emptyDir).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402

TARGET_SHARE = 0.25
# Issue 13 sets the 25% target at ten times the data (4.3 M rows). At the sample's size the fixed cost
# of a Python process with pandas and matplotlib (~75 MB of its own) outweighs the shared columns, so
# the share there is reported, not judged.
TARGET_MIN_ROWS = 4_000_000

CHILD = r"""
import os, sys, time
t0 = time.perf_counter()
os.environ.setdefault("DIAGNOSTIC_OPERATIONS", "1")
import jobqueue_worker.worker  # noqa: F401  the worker's imports: redis, prometheus, core
from jobqueue.settings import load_settings
from jobqueue_worker.data import DataSource
from jobqueue_worker.main import load_catalogue
settings = load_settings()
operations = load_catalogue(settings)
data = DataSource(settings.data_path, **settings.data_options())
ds = data.get().warm()
ready = time.perf_counter() - t0
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
params = {"incident_count_by_date": {"date": "2024-03-06"}, "incidents_by_road": {"road": "S CONGRESS AVE"},
          "daily_counts": {"start": "2024-01-01", "end": "2024-12-31"},
          "plot_daily_counts": {"start": "2024-01-01", "end": "2024-12-31"},
          "incidents_within_radius": {"latitude": 30.2672, "longitude": -97.7431, "radius_km": 1.0}}
for op in operations:
    if op.needs_dataset:
        op.run(ds, params.get(op.name) or op.example_submission()["params"])
from atx_analysis.dataset import release_after_jobs
release_after_jobs()   # what the worker's housekeeping does within 10 s of running jobs
print("READY", ds.from_cache, round(ready, 3), round(peak, 1), flush=True)
sys.stdin.readline()
"""


# WORKER_CONCURRENCY=N in one pod: the supervisor loads once, then forks the worker processes
CHILD_FORKED = r"""
import os, sys
os.environ.setdefault("DIAGNOSTIC_OPERATIONS", "1")
import jobqueue_worker.worker  # noqa: F401
from jobqueue.settings import load_settings
from jobqueue_worker.data import DataSource
from jobqueue_worker.main import load_catalogue, preload
settings = load_settings()
operations = load_catalogue(settings)
data = DataSource(settings.data_path, **settings.data_options())
preload(operations, data)
n = int(sys.argv[1])
pids, ready_r, ready_w = [], *os.pipe()
go_r, go_w = os.pipe()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        ds = data.get().warm()
        for op in operations:
            if op.needs_dataset:
                op.run(ds, op.example_submission()["params"])
        from atx_analysis.dataset import release_after_jobs
        release_after_jobs()
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        os._exit(0)
    pids.append(pid)
for _ in range(n):
    os.read(ready_r, 1)
print("READY", *pids, flush=True)
sys.stdin.readline()
os.write(go_w, b"x" * n)
for pid in pids:
    os.waitpid(pid, 0)
"""


def forked(env: dict[str, str], workers: int) -> list[dict[str, float]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_FORKED, str(workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"forked workers did not get ready: {line}")
        time.sleep(0.5)
        return [smaps(int(pid)) for pid in line[1:]] + [smaps(proc.pid)]
    finally:
        try:
            proc.communicate("\n", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def smaps(pid: int) -> dict[str, float]:
    """MB figures of one process from /proc/<pid>/smaps_rollup."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[name.strip()] = int(parts[0]) / 1024
    return {
        "rss_mb": fields["Rss"],
        "pss_mb": fields["Pss"],
        "uss_mb": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
        "anon_mb": fields.get("Anonymous", 0),
        "file_pss_mb": fields.get("Pss_File", 0),
    }


def start_child(env: dict[str, str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
    )
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise RuntimeError(f"worker process did not get ready: {line}")
    return proc, {"from_cache": line[1] == "True", "ready_seconds": float(line[2]), "peak_mb": float(line[3])}


def load_volume(path: Path, volume: Path) -> dict:
    """The loader as the chart runs it, on ``volume``: the file put there (a hard link: the same
    bytes without copying a GB), then `jobqueue data fetch --keep-existing` parses it and writes the
    cache beside it. Returns its wall time and peak RSS."""
    target = volume / "traffic_incidents.csv"
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    env = {
        **os.environ,
        "DATA_CACHE_DIR": str(volume / "cache"),
        "DATA_CACHE_MODE": "readwrite",
        "DATA_PATH": str(target),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jobqueue"),
            "data",
            "fetch",
            "--from",
            str(path),
            "--output",
            str(target),
            "--keep-existing",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not json.loads(out).get("cache"):
        raise RuntimeError(f"the loader failed or built no cache: {out}")
    return {"seconds": time.perf_counter() - started, "peak_mb": usage.ru_maxrss / 1024, "data": target}


def api_pod(env: dict[str, str]) -> dict:
    """One API pod as the chart runs it (`jobqueue-api`: gunicorn, WEB_CONCURRENCY=2, the dataset
    loaded in the master before the fork), after every synchronous /analysis route was asked once
    per process, plots included: time to ready and the pod's memory (sum of its processes' PSS)."""
    import requests

    from devstack.procs import free_port, stop

    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-memory-api-")
    full = {
        **os.environ,
        **env,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": tmp,
        "ALLOWED_HOSTS": "*",
        "LOG_LEVEL": "WARNING",
    }
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobqueue-api")],
        env=full,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the API exited before it was ready")
            try:
                if requests.get(f"{base}/data", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        ready = time.perf_counter() - started
        from_cache = requests.get(f"{base}/data", timeout=5).json()["from_cache"]
        ops = requests.get(f"{base}/operations", timeout=5).json()
        ops = ops.get("operations", ops) if isinstance(ops, dict) else ops
        for _ in range(4):  # several rounds, so both gunicorn processes answer each route
            for op in ops:
                params = (op.get("example") or {}).get("params") or {}
                requests.get(f"{base}/analysis/{op['name']}", params=params, timeout=120)
        time.sleep(0.5)
        pids = [
            int(p)
            for p in subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
        ]
        figures = [smaps(pid) for pid in pids]
    finally:
        stop(proc, 20)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "ready_seconds": ready,
        "from_cache": from_cache,
        "processes": len(figures),
        "pss_mb": sum(f["pss_mb"] for f in figures),
        "rss_mb": sum(f["rss_mb"] for f in figures),
    }


def measure(rows: int, workers: int) -> dict:
    from bench.bench_analysis import data_file

    path = data_file(rows)
    volume = Path(tempfile.mkdtemp(prefix="bench-memory-volume-", dir=path.parent))
    try:
        loader = load_volume(path, volume)
        env = {
            "DATA_PATH": str(loader["data"]),
            "DATA_CACHE_DIR": str(volume / "cache"),
            "DATA_CACHE_MODE": "readonly",
            "REDIS_URL": "redis://127.0.0.1:1",
            "WORKER_METRICS_PORT": "0",
        }
        procs, starts, alone = [], [], None
        try:
            for i in range(workers):
                proc, info = start_child(env)
                if not info["from_cache"]:
                    raise RuntimeError("a worker process did not find the cache on the volume")
                procs.append(proc)
                starts.append(info)
                time.sleep(0.5)
                if i == 0:
                    alone = smaps(proc.pid)  # one worker on the node: its RSS is the reference
            together = [smaps(p.pid) for p in procs]
        finally:
            for proc in procs:
                try:
                    proc.communicate("\n", timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        parser, parsed = start_child({**env, "DATA_CACHE_MODE": "off"})  # a pod parsing the file itself
        try:
            time.sleep(0.5)
            parsed.update(smaps(parser.pid))
        finally:
            parser.communicate("\n", timeout=60)
        fork = forked(env, workers)
        api = {"cache": api_pod(env), "parse": api_pod({**env, "DATA_CACHE_MODE": "off"})}
    finally:
        shutil.rmtree(volume, ignore_errors=True)
    extra = [t["uss_mb"] for t in together[1:]]
    return {
        "rows": rows,
        "workers": workers,
        "loader": {k: v for k, v in loader.items() if k != "data"},
        "alone": alone,
        "together": together,
        "ready_seconds": statistics.median(s["ready_seconds"] for s in starts),
        "peak_mb": statistics.median(s["peak_mb"] for s in starts),
        "parsed": parsed,
        "extra_uss_mb": max(extra) if extra else None,
        "share": (max(extra) / alone["rss_mb"]) if extra else None,
        "node_total_mb": sum(t["pss_mb"] for t in together),
        "forked": fork,
        "forked_total_mb": sum(t["pss_mb"] for t in fork),
        "api": api,
    }


def markdown(results: list[dict]) -> str:
    lines = [
        "## Worker memory on one node",
        "",
        report.stamp(),
        "",
        "`bench/bench_memory.py`: " + __doc__.split("\n\n", 2)[2].replace("\n", " ").strip(),
        "",
    ]
    rows = []
    for r in results:
        judged = r["rows"] >= TARGET_MIN_ROWS
        ok = r["share"] is not None and r["share"] <= TARGET_SHARE
        rows.append(
            [
                f"{r['rows']:,} rows: each extra worker process adds at most 25% of the first one's RSS"
                + ("" if judged else " (reported: the target is set at ten times the data)"),
                f"{r['extra_uss_mb']:.0f} MB USS vs {r['alone']['rss_mb']:.0f} MB RSS = {100 * r['share']:.0f}%",
                report.verdict(ok) if judged else "n/a",
            ]
        )
    lines += [report.table(["target (issue 13)", "measured", "verdict"], rows), ""]
    lines += [
        "Cold start of one worker pod, process start to ready (dataset loaded, indexes built), and its "
        "peak RSS: mapping the loader's cache from the data volume vs parsing the file itself (what "
        "every pod did before the cache moved onto the volume).",
        "",
        report.table(
            ["rows", "from the volume's cache", "parsing the file", "ratio", "the loader (once)"],
            [
                [
                    f"{r['rows']:,}",
                    f"{r['ready_seconds']:.2f} s, peak {r['peak_mb']:.0f} MB",
                    f"{r['parsed']['ready_seconds']:.1f} s, peak {r['parsed']['peak_mb']:.0f} MB",
                    f"{r['parsed']['ready_seconds'] / r['ready_seconds']:.0f}x faster, "
                    f"{r['parsed']['peak_mb'] / r['peak_mb']:.1f}x less memory",
                    f"{r['loader']['seconds']:.1f} s, peak {r['loader']['peak_mb']:.0f} MB",
                ]
                for r in results
            ],
        ),
        "",
    ]
    lines += [
        "One API pod (`jobqueue-api`, gunicorn with the chart's 2 processes, the dataset loaded before "
        "the fork) after every synchronous `/analysis/*` route, plots included, was asked in each "
        "process: time to ready and the pod's memory (sum of PSS over its processes).",
        "",
        report.table(
            ["rows", "from the volume's cache", "parsing the file"],
            [
                [
                    f"{r['rows']:,}",
                    f"{r['api']['cache']['ready_seconds']:.1f} s, {r['api']['cache']['pss_mb']:.0f} MB",
                    f"{r['api']['parse']['ready_seconds']:.1f} s, {r['api']['parse']['pss_mb']:.0f} MB",
                ]
                for r in results
            ],
        ),
        "",
    ]
    for r in results:
        lines += [
            f"### {r['rows']:,} rows, {r['workers']} worker processes",
            "",
            f"One worker alone: RSS {r['alone']['rss_mb']:.0f} MB, USS {r['alone']['uss_mb']:.0f} MB. All "
            f"{r['workers']} together use {r['node_total_mb']:.0f} MB of the node (sum of PSS), against "
            f"{r['workers'] * r['alone']['rss_mb']:.0f} MB if nothing were shared. A worker that parsed "
            f"the file itself: RSS {r['parsed']['rss_mb']:.0f} MB, of it {r['parsed']['uss_mb']:.0f} MB its "
            f"own (USS): what each extra pod added before.",
            "",
            report.table(
                ["process", "RSS MB", "PSS MB", "USS MB", "anonymous MB"],
                [
                    [
                        f"worker {i + 1}",
                        f"{t['rss_mb']:.0f}",
                        f"{t['pss_mb']:.0f}",
                        f"{t['uss_mb']:.0f}",
                        f"{t['anon_mb']:.0f}",
                    ]
                    for i, t in enumerate(r["together"])
                ]
                + [
                    [
                        "parsing worker",
                        f"{r['parsed']['rss_mb']:.0f}",
                        f"{r['parsed']['pss_mb']:.0f}",
                        f"{r['parsed']['uss_mb']:.0f}",
                        f"{r['parsed']['anon_mb']:.0f}",
                    ]
                ],
            ),
            "",
            f"The same {r['workers']} processes forked by one `jobqueue-worker` (`WORKER_CONCURRENCY="
            f"{r['workers']}`: the supervisor loads, then forks; each child then ran every operation): "
            f"{r['forked_total_mb']:.0f} MB of the node with the supervisor (sum of PSS); each child's "
            "USS " + ", ".join(f"{t['uss_mb']:.0f}" for t in r["forked"][:-1]) + " MB.",
            "",
        ]
    return "\n".join(lines).rstrip()


def main() -> int:
    from atx_analysis.generator import FULL_ROWS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows",
        default=str(FULL_ROWS) if report.quick() else f"{FULL_ROWS},{FULL_ROWS * 10}",
        help="comma list of data sizes, in rows",
    )
    ap.add_argument("--workers", type=int, default=3, help="worker processes alive at once")
    ap.add_argument("--write", action="store_true", help="also rewrite its section of docs/benchmarks.md")
    args = ap.parse_args()
    results = [measure(int(r), args.workers) for r in args.rows.split(",")]
    out = REPO / ".run" / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    print(text)
    if args.write:
        report.write_section("memory", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
