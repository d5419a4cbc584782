"""The web page with 100,000 jobs stored: weight of each page and the server's time for it.

    .venv/bin/python bench/bench_ui.py [--jobs 100000] [--repeat 30]

Starts Redis and the API under gunicorn (default settings, as ``make up`` does; no worker), stores
``--jobs`` jobs in the store's own layout (document, time index, status and operation indexes;
a tenth failed, a few waiting, results of realistic size), then for each page fetches what a
browser fetches: the HTML, its script and styles, and the JSON its script asks for first. Weight
is the bytes over the wire (the API does not compress). Server time is the median over
``--repeat`` requests on loopback, and as a ratio to ``GET /healthz`` measured the same way in the
same run (the machine's speed cancels out).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.stack import running_stack  # noqa: E402
from jobqueue import keys  # noqa: E402
from jobqueue.jobs import Job, JobStatus  # noqa: E402

OPS = {
    "top_locations": {"n": 10},
    "incidents_by_hour": {},
    "incident_count_by_date": {"date": "2024-03-06"},
    "incidents_by_road": {"road": "LAMAR"},
    "plot_top_locations": {"n": 10},
}


def _result(op: str, rng: random.Random):
    if op == "top_locations":
        return {"top_locations": {f"{rng.randint(100, 9999)} N LAMAR BLVD": rng.randint(10, 500) for _ in range(10)}}
    if op == "incidents_by_hour":
        counts = {str(h): rng.randint(1000, 30000) for h in range(24)}
        return {"counts": counts, "total": sum(counts.values())}
    if op == "incident_count_by_date":
        return {"incident_count": rng.randint(50, 200), "date": "2024-03-06"}
    if op == "incidents_by_road":
        return {"count": rng.randint(100, 5000), "road": "LAMAR", "addresses": rng.randint(10, 900)}
    return None


def fill(jobs_redis, n: int) -> list[str]:
    rng = random.Random(332)
    t0 = time.time() - n * 0.5
    pipe = jobs_redis.pipeline(transaction=False)
    ids = []
    for i in range(n):
        op = rng.choice(list(OPS))
        status = JobStatus.SUBMITTED if i >= n - 5 else (JobStatus.FAILED if i % 10 == 0 else JobStatus.COMPLETE)
        submitted = t0 + i * 0.5
        job = Job(
            id=f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
            operation=op,
            params=OPS[op],
            status=status,
            submitted_at=submitted,
        )
        if status is not JobStatus.SUBMITTED:
            job.started_at, job.finished_at, job.attempts, job.worker = submitted + 0.1, submitted + 0.3, 1, "vm:1:abc"
            if status is JobStatus.FAILED:
                job.error = "DataFormatError: the column 'Published Date' is missing"
            elif op.startswith("plot_"):
                job.result_ref, job.result_type = keys.result(job.id), "image/png"
            else:
                job.result = _result(op, rng)
        ids.append(job.id)
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: submitted})
        pipe.zadd(keys.status_index(status.value) if status.is_final else keys.ACTIVE_INDEX, {job.id: submitted})
        pipe.zadd(keys.operation_index(op), {job.id: submitted})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return ids


def timed(session: requests.Session, url: str, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        r = session.get(url, timeout=30)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
        size = len(r.content)
    return statistics.median(times), size


def assets(html: str, base: str) -> list[str]:
    return [urljoin(base, a) for a in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs stored behind the API")
    parser.add_argument("--repeat", type=int, default=30, help="fetches of each page (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        stack.start_api(web_concurrency=2)
        stack.wait_api(path="/readyz")
        t = time.perf_counter()
        ids = fill(stack.jobs_client(), args.jobs)
        print(f"stored {args.jobs:,} jobs in {time.perf_counter() - t:.1f} s")
        s = requests.Session()
        base = stack.url
        baseline, _ = timed(s, f"{base}/healthz", args.repeat)
        one = ids[len(ids) // 2]
        pages = {
            "overview /ui/": ("/ui/", ["/queue"]),
            "jobs /ui/jobs": ("/ui/jobs", ["/jobs?limit=25"]),
            "jobs, failed only": ("/ui/jobs?status=failed", ["/jobs?limit=25&status=failed"]),
            "jobs, one operation": (
                "/ui/jobs?operation=incidents_by_hour",
                ["/jobs?limit=25&operation=incidents_by_hour"],
            ),
            "job detail": (f"/ui/jobs/{one}", [f"/jobs/{one}"]),
            "submit form": ("/ui/submit?operation=incidents_within_radius", []),
            "data": ("/ui/data", []),
            "/docs (Swagger UI)": ("/docs", ["/openapi.json"]),
        }
        # a deep page: the 40th page of failed jobs by cursor
        cursor = None
        for _ in range(40):
            page = s.get(
                f"{base}/jobs?limit=25&status=failed" + (f"&cursor={cursor}" if cursor else ""), timeout=30
            ).json()
            cursor = page["next_cursor"]
        pages["jobs, failed, page 41"] = ("/ui/jobs?status=failed", [f"/jobs?limit=25&status=failed&cursor={cursor}"])
        rows = []
        cache: dict[str, int] = {}
        for name, (path, data) in pages.items():
            html_t, html_b = timed(s, base + path, args.repeat)
            html = s.get(base + path, timeout=30).text
            asset_b = 0
            for url in assets(html, base + path):
                if url not in cache:
                    cache[url] = len(s.get(url, timeout=30).content)
                asset_b += cache[url]
            data_t = data_b = 0.0
            for d in data:
                t_, b_ = timed(s, base + d, args.repeat)
                data_t += t_
                data_b += b_
            rows.append((name, html_b, asset_b, data_b, html_t, data_t))
        print(f"\n{args.jobs:,} jobs stored; GET /healthz median {baseline * 1000:.2f} ms (the baseline)\n")
        print(
            "| page | HTML KB | script + styles KB | first data KB | total KB | HTML ms (x healthz) | data ms (x healthz) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, hb, ab, db, ht, dt in rows:
            print(
                f"| {name} | {hb / 1024:.1f} | {ab / 1024:.1f} | {db / 1024:.1f} | {(hb + ab + db) / 1024:.1f} | "
                f"{ht * 1000:.1f} ({ht / baseline:.1f}x) | "
                + (f"{dt * 1000:.1f} ({dt / baseline:.1f}x) |" if dt else "- |")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
