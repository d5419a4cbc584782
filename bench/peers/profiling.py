"""Profiles of our worker draining jobs, for the targets it misses (issue 6: "say by how much and
why, with a profile").

The worker runs in one process (``WORKER_CONCURRENCY=1``) under pyinstrument's statistical
profiler while it drains N jobs released at once, exactly as in the drain benchmark; on SIGTERM it
exits gracefully and pyinstrument writes a text call tree. ``summary()`` keeps the frames that
take a noticeable share of the time, which is what the report quotes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from . import harness, procs
from .ours import OursPeer

OUT_DIR = procs.LOG_DIR.parent / "profiles"


class ProfiledOurs(OursPeer):
    """Ours, one process, under pyinstrument (the worker module run with ``-m``)."""

    def __init__(self, redis_url, data_path, outfile: Path):
        super().__init__(redis_url, data_path, 1)
        self.outfile = outfile

    def start(self, run):
        self.run = run
        argv = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "-o",
            str(self.outfile),
            "--show-all",
            "-m",
            "jobqueue_worker.main",
        ]
        env = {**self.env, "WORKER_CONCURRENCY": "1"}
        self.procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]


def profile_drain(redis_url: str, data_path: str, jobs: list, label: str) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    outfile = OUT_DIR / f"ours-{label}-{uuid.uuid4().hex[:6]}.txt"
    peer = ProfiledOurs(redis_url, data_path, outfile)
    try:
        harness.drain_and_steady(peer, jobs, None, None, timeout=300)
    finally:
        peer.close()
    deadline = time.monotonic() + 10
    while not outfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return outfile


IDLE = "Delivery.wait_and_claim"  # the blocking pop while the queue is empty: before release, after the drain


def summary(
    profile: Path,
    root: str = "Worker.work",
    idle: str = IDLE,
    min_share: float = 3.0,
    depth: int = 16,
    max_lines: int = 45,
) -> str:
    """The call tree under ``root`` (the worker's loop, so start-up is left out), with each frame's
    share of the loop's busy time (``idle`` frames, waiting on an empty queue, are left out);
    frames under ``min_share`` % or deeper than ``depth`` levels are cut."""
    if not profile.exists():
        return "(no profile written)"
    rows = []
    for line in profile.read_text().splitlines():
        match = re.match(r"^([\s│├└─]*?)(\d+\.\d+)\s+(\S.*)$", line)
        if match:
            rows.append((len(match.group(1)), float(match.group(2)), match.group(3)))
    start = next((i for i, r in enumerate(rows) if r[2].startswith(root)), None)
    if start is None:
        return "\n".join(f"{r[1]:.3f}s {r[2]}" for r in rows[:max_lines])
    base_indent, total, _ = rows[start]
    subtree = []
    for indent, seconds, text in rows[start + 1 :]:
        if indent <= base_indent:
            break  # left the root's subtree
        subtree.append((indent, seconds, text))
    idle_seconds = sum(sec for _, sec, text in subtree if text.startswith(idle))
    busy = max(total - idle_seconds, 1e-9)
    kept = [f"100.0%  {rows[start][2]}  (busy {busy:.2f} s; {idle_seconds:.2f} s idle in {idle} left out)"]
    skip_below = None
    for i, (indent, seconds, text) in enumerate(subtree):
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = None
        if text.startswith(idle):
            skip_below = indent
            continue
        idle_inside = 0.0  # idle frames below this one count as idle, not as this frame's cost
        for indent2, seconds2, text2 in subtree[i + 1 :]:
            if indent2 <= indent:
                break
            if text2.startswith(idle):
                idle_inside += seconds2
        level = (indent - base_indent) // 3
        share = (seconds - idle_inside) / busy * 100
        if level <= depth and share >= min_share:
            kept.append(f"{'  ' * level}{share:5.1f}%  {text}")
    return "\n".join(kept[:max_lines])


def profile_api_round_trips(redis_url: str, data_path: str, seconds: float = 6.0, top: int = 18) -> str:
    """Sequential HTTP round trips while py-spy samples the API's gunicorn workers (busy threads only):
    the functions with the largest inclusive share of the API's CPU samples."""
    import shutil
    from collections import Counter

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "(py-spy not installed)"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    harness.flush(redis_url)
    peer = OursPeer(redis_url, data_path, 1)
    outputs: list[Path] = []
    try:
        peer.start(f"ours-api-profile-{uuid.uuid4().hex[:6]}")
        peer.wait_ready()
        for _ in range(20):
            peer.round_trip("sleep", {"seconds": 0})  # starts the API, warms it
        workers = _children(peer.api.pid)
        spies = []
        for pid in workers or [peer.api.pid]:
            out = OUT_DIR / f"api-{pid}.txt"
            outputs.append(out)
            spies.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                        "--rate",
                        "250",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        deadline = time.monotonic() + seconds
        trips = 0
        while time.monotonic() < deadline:
            peer.round_trip("sleep", {"seconds": 0})
            trips += 1
        for s in spies:
            s.wait(seconds + 30)
    finally:
        peer.stop()
        peer.close()
    inclusive: Counter = Counter()
    leaves: Counter = Counter()
    total = idle = 0
    for out in outputs:
        if not out.exists():
            continue
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [_short(f) for f in stack.split(";")]
            waiting_for_news = frames[-1].startswith("SocketBuffer._read_from_socket") and any(
                f.startswith("PubSub.get_message") for f in frames
            )
            if (
                any(f.startswith(IDLE_API) for f in frames[-2:])
                or frames[-1].startswith(IDLE_LEAVES)
                or waiting_for_news
            ):
                idle += n  # event loop, idle pool threads, the done-channel listener blocked in recv
                continue
            total += n
            leaves[frames[-1]] += n
            for name in set(frames):
                if not name.startswith(GENERIC):
                    inclusive[name] += n
    if not total:
        return "(py-spy collected no samples; it needs ptrace permission)"
    lines = [
        f"{trips} sequential round trips in {seconds:.0f} s; {total} busy samples of the API's gunicorn "
        f"workers ({idle} more idle: event loop, pool threads and done-channel listener waiting; left out)",
        "",
        "Inclusive share (a function and all it calls):",
    ]
    lines += [f"{n / total * 100:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "Where the samples land (leaf frames):"]
    lines += [f"{n / total * 100:5.1f}%  {name}" for name, n in leaves.most_common(8)]
    return "\n".join(lines)


IDLE_API = ("EpollSelector.select", "select (selectors", "PollSelector.select")
IDLE_LEAVES = ("_worker (concurrent", "Condition.wait")
GENERIC = (
    "Thread.",
    "_worker (concurrent",
    "<module>",
    "main (jobqueue_api/serve",
    "BaseApplication.",
    "Arbiter.",
    "ThreadWorker.init_process",
    "Worker.init_process",
    "ThreadWorker.run",
    "WorkItem.run",
    "Retry.call_with_retry",
    "<lambda>",
)


def _short(frame: str) -> str:
    name = re.sub(r"\s*\(.*?/(site-packages|lib/python3\.\d+)/", " (", frame)
    return re.sub(r":\d+\)$", ")", name)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's master forks its workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found
