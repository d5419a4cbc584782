"""What the API and a worker really export on /metrics is docs/metrics.md's tables: the same
families, types and labels, both ways.

The rule tests hold the rules to the table; nothing held the processes to it. A worker of one
process also exported prometheus_client's ``<name>_created`` gauges (``jobqueue_jobs_processed_created``,
...), in no table, and not exported by the API or by a worker of several processes: a scrape's
series depended on ``WORKER_CONCURRENCY``. Real processes are scraped (a real API, real workers of
one and of two processes, a real Redis); nothing is mocked."""

from __future__ import annotations

import re

import pytest
import requests

from devstack.paths import REPO_ROOT
from devstack.stack import running_stack

pytestmark = pytest.mark.slow

ROW = re.compile(r"^\| `(jobqueue_\w+)` \| (\w+) \|([^|]*)\|", re.M)


def documented(section: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from one table (`## API` or `## Worker`) of docs/metrics.md."""
    text = (REPO_ROOT / "docs" / "metrics.md").read_text()
    table = text[text.index(f"## {section}\n") :]
    table = table[: table.index("\n## ", 5)]
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in ROW.findall(table)}


def exported(exposition: str) -> dict[str, tuple[str, set[str]]]:
    """family -> (type, labels) of the jobqueue_ families a scrape shows (a counter by its _total name)."""
    families: dict[str, tuple[str, set[str]]] = {}
    for base, kind in re.findall(r"^# TYPE (jobqueue_\w+) (\w+)$", exposition, re.M):
        name = base + "_total" if kind == "counter" and not base.endswith("_total") else base
        labels = set()
        for sample in re.findall(rf"^{base}(?:_total|_bucket|_sum|_count)?\{{(.*?)\}}", exposition, re.M):
            labels |= set(re.findall(r"(\w+)=", sample)) - {"le"}
        families[name] = (kind, labels)
    return families


def _differences(shown, real) -> list[str]:
    out = [f"exported, in no table: {n} {real[n]}" for n in sorted(set(real) - set(shown))]
    out += [f"in the table, not exported: {n}" for n in sorted(set(shown) - set(real))]
    out += [f"{n}: table {shown[n]}, exported {real[n]}" for n in sorted(set(shown) & set(real)) if shown[n] != real[n]]
    return out


def test_the_api_and_the_workers_export_what_the_tables_say(tmp_path):
    with running_stack(tmp_path) as stack:
        stack.start_api()
        one = stack.start_worker(metrics_path="/metrics")
        two = stack.start_worker(metrics_path="/metrics", WORKER_CONCURRENCY="2")
        stack.wait_workers_registered(3)
        job = stack.submit("top_locations", {"n": 3})
        stack.wait_all_final([job], timeout=60)
        api = requests.get(f"{stack.url}/metrics", timeout=10).text
        problems = [f"API: {p}" for p in _differences(documented("API"), exported(api))]
        for name, worker in (("one process", one), ("two processes", two)):
            scrape = requests.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=10).text
            problems += [f"worker ({name}): {p}" for p in _differences(documented("Worker"), exported(scrape))]
    assert not problems, "\n".join(problems)


def test_the_reading_of_a_scrape():
    scrape = (
        "# TYPE jobqueue_jobs_processed counter\n"
        'jobqueue_jobs_processed_total{operation="a",outcome="complete"} 1.0\n'
        "# TYPE jobqueue_jobs_processed_created gauge\n"
        'jobqueue_jobs_processed_created{operation="a",outcome="complete"} 1.7e9\n'
        "# TYPE jobqueue_job_duration_seconds histogram\n"
        'jobqueue_job_duration_seconds_bucket{le="1.0",operation="a"} 1.0\n'
    )
    assert exported(scrape) == {
        "jobqueue_jobs_processed_total": ("counter", {"operation", "outcome"}),
        "jobqueue_jobs_processed_created": ("gauge", {"operation", "outcome"}),
        "jobqueue_job_duration_seconds": ("histogram", {"operation"}),
    }
    assert documented("Worker")["jobqueue_worker_busy"] == ("gauge", set())
