"""A refused data file fixed while the stack runs, as a user meets it: the API answered 503 to
``/readyz``, ``/data`` and every submit until it was restarted, and the workers had exited on the
file, so nothing ran the jobs even after a restart of the API alone."""

from __future__ import annotations

import time

import requests

from devstack.paths import SAMPLE
from devstack.procs import wait_until
from devstack.stack import running_stack

SUBMIT = {"operation": "incident_count_by_date", "params": {"date": "2024-03-09"}}


def test_a_fixed_data_file_is_loaded_by_the_api_and_the_worker_without_a_restart(tmp_path):
    data = tmp_path / "incidents.csv"
    data.write_text("a,b,c\n1,2,3\n")
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1, DATA_PATH=str(data))
        worker = stack.start_worker(DATA_PATH=str(data))
        assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 503
        wait_until(lambda: "data file refused; waiting for it to change" in worker.log_tail(4000), 30, "the refusal")
        time.sleep(0.5)
        assert worker.alive(), stack.logs()
        answer = requests.post(f"{stack.url}/submit", json=SUBMIT, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"] == "data_unavailable"

        data.write_bytes(SAMPLE.read_bytes())  # the user fixes the file in place
        fixed = time.monotonic()
        wait_until(lambda: requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200, 20, "ready", 0.5)
        assert time.monotonic() - fixed < 15
        assert requests.get(f"{stack.url}/data", timeout=10).json()["rows"] == 5000
        answer = requests.post(f"{stack.url}/submit", json=SUBMIT, timeout=10)
        assert answer.status_code == 202, answer.text
        done = stack.wait_all_final([answer.json()["job_id"]], 60)
        assert next(iter(done.values()))["status"] == "complete", stack.logs()
