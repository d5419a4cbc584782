"""A data file the loader refuses, as a user meets it through a real API (gunicorn, redis-server):
``/readyz`` and ``/data`` said 503 and the workers exited on the file, but ``POST /submit``
answered 202 and the job waited with nobody to run it; ``jobqueue submit`` then waited too."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from devstack.paths import BIN
from devstack.stack import running_stack

SUBMIT = {"operation": "incident_count_by_date", "params": {"date": "2024-03-09"}}


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    work = tmp_path_factory.mktemp("refused-data")
    wrong = work / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n")
    with running_stack(work) as stack:
        stack.start_api(web_concurrency=1, DATA_PATH=str(wrong))
        yield stack


def test_a_submit_while_the_data_is_refused_is_a_503_naming_it_and_stores_nothing(refused):
    for headers in ({}, {"Idempotency-Key": '"k-1"'}):
        answer = requests.post(f"{refused.url}/submit", json=SUBMIT, headers=headers, timeout=10)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "data_unavailable"
        assert "unrecognised columns [a, b, c]" in body["message"] and "load it again within seconds" in body["message"]
        assert answer.headers["Retry-After"] == "60"
    assert refused.jobs_client().keys("job:*") == []
    # a request that is wrong anyway still says what is wrong with it
    answer = requests.post(f"{refused.url}/submit", json={"operation": "nope"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "unknown_operation"


def test_the_cli_says_why_at_once_instead_of_retrying(refused):
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "incident_count_by_date", "date=2024-03-09", "--wait", "--url", refused.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done
    assert time.monotonic() - started < 20  # five Retry-Afters of 60 s before
    assert done.stderr.startswith("jobqueue: the API answered 503 data_unavailable: no job can run"), done.stderr
    assert "retried" not in done.stderr
