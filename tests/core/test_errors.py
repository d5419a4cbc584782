"""One error taxonomy across the packages: permanent errors fail a job at its first attempt with a
clear message and map to a named 4xx on every route; nothing a dataset lacks becomes a 500.

The defect: on data without a column an operation needs (a SODA ``$select`` subset), the worker
retried the job three times with a traceback each, and ``GET /analysis/<op>`` answered 500."""

from __future__ import annotations

import pytest
import requests

from atx_analysis import errors
from atx_analysis.registry import ParamError, UnknownOperation
from jobqueue.errors import failure_message, is_permanent
from devstack.paths import REPO_ROOT
from devstack.stack import running_stack

SODA_SELECT = REPO_ROOT / "tests" / "analysis" / "fixtures" / "soda_select.csv"  # published_date, address


@pytest.mark.parametrize(
    "exc",
    [
        ParamError("n", "'n' must be at least 1"),
        UnknownOperation("nope", ["top_locations"]),
        errors.DataFormatError("x.csv: no header line"),
        errors.MissingColumnError("issue_reported", "unique_issues"),
    ],
)
def test_permanent_errors_are_not_retried(exc):
    assert isinstance(exc, errors.PermanentError) and is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        errors.TransientError("data not there yet"),
        ConnectionError("reset"),
        RuntimeError("a bug"),
        errors.FetchError("download failed"),
    ],
)
def test_everything_else_is_retried(exc):
    assert not is_permanent(exc)


def test_failure_messages_say_what_to_fix():
    assert failure_message(ParamError("n", "'n' must be at least 1")) == "bad parameter: 'n' must be at least 1"
    assert "'issue_reported' column" in failure_message(errors.MissingColumnError("issue_reported", "unique_issues"))
    assert failure_message(RuntimeError("boom")) == "RuntimeError: boom"


@pytest.mark.slow
def test_missing_column_fails_once_and_every_route_names_it(tmp_path):
    with running_stack(
        tmp_path, DATA_PATH=str(SODA_SELECT), JOB_MAX_ATTEMPTS="3", JOB_RETRY_BACKOFF_SECONDS="0.1"
    ) as stack:
        stack.start_worker()
        stack.start_api(web_concurrency=1)

        # the queue: one attempt, failed, the message names the column
        r = requests.post(stack.url + "/submit", json={"operation": "unique_issues"}, timeout=10)
        assert r.status_code == 202, r.text
        job = requests.get(f"{stack.url}/status/{r.json()['job_id']}?wait=30", timeout=40).json()
        assert job["status"] == "failed" and job["attempts"] == 1, job
        assert "'issue' column" in job["error"] and "Traceback" not in job["error"], job
        worker_log = stack.workers[0].log_text()
        assert "retrying" not in worker_log and "Traceback" not in worker_log, worker_log[-3000:]

        # the synchronous route: a named 422, not a 500
        r = requests.get(stack.url + "/analysis/unique_issues", timeout=10)
        assert r.status_code == 422, r.text
        body = r.json()
        assert (body["error"], body["column"], body["operation"]) == ("missing_column", "issue", "unique_issues")

        # every operation, with its example parameters, on this data: an answer or a named 4xx
        ops = requests.get(stack.url + "/operations", timeout=10).json()["operations"]
        seen = {}
        for op in ops:
            if op["name"] == "sleep":
                continue
            params = {k: str(v) for k, v in op["example"]["params"].items()} if "example" in op else {}
            r = requests.get(f"{stack.url}/analysis/{op['name']}", params=params, timeout=60)
            seen[op["name"]] = r.status_code
            assert r.status_code in (200, 400, 422), f"{op['name']}: {r.status_code} {r.text[:300]}"
            if r.status_code != 200:
                assert r.json()["error"] in ("missing_column", "unusable_data", "invalid_param"), r.text
        assert 422 in seen.values() and 200 in seen.values(), seen
        assert "internal_error" not in stack.api.log_text()
