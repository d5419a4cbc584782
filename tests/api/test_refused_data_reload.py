"""What the 503 ``data_unavailable`` says once a refused data file is replaced, through a real API
(gunicorn, redis-server): while the new file was being loaded, and after it was refused too, the
message still told the user to fix the file, as if the replacement had not been noticed."""

from __future__ import annotations

import os

import requests

from devstack.paths import SAMPLE
from devstack.procs import wait_until
from devstack.stack import running_stack

SUBMIT = {"operation": "incident_count_by_date", "params": {"date": "2024-03-09"}}


def test_the_503_says_a_replacement_was_refused_too_and_that_a_changed_file_is_being_loaded(tmp_path):
    data = tmp_path / "incidents.csv"
    data.write_text("a,b,c\n1,2,3\n")
    # a good file large enough that its load takes seconds even on an idle machine (200k rows)
    big = tmp_path / "big.csv"
    head, _, rows = SAMPLE.read_text().partition("\n")
    big.write_text(head + "\n" + rows * 40)
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1, DATA_PATH=str(data))

        def submit() -> requests.Response:
            return requests.post(f"{stack.url}/submit", json=SUBMIT, timeout=30)

        first = submit()
        assert first.status_code == 503 and first.json()["error"] == "data_unavailable", first.text
        message = first.json()["message"]
        assert message.startswith("no job can run: the data file is refused (") and "[a, b, c]" in message
        assert "fix DATA_PATH's file" in message

        data.write_text("x,y\n1,2\n")  # replaced by another file the loader refuses
        message = wait_until(
            lambda: "[x, y]" in (m := submit().json()["message"]) and m, 60, "the replacement refused", 0.2
        )
        assert message.startswith("no job can run: the file that replaced the refused data file is refused too ("), (
            message
        )
        assert "fix DATA_PATH's file" in message

        os.replace(big, data)  # now a good one: 503s name the load under way until it is done
        seen: list[tuple[str, str]] = []

        def accepted() -> bool:
            answer = submit()
            if answer.status_code == 503:
                seen.append((answer.json()["message"], answer.headers["Retry-After"]))
            return answer.status_code == 202

        wait_until(accepted, 120, "the good file loaded", 0.05)
        loading = [(m, retry) for m, retry in seen if "being loaded now" in m]
        assert loading, seen
        assert loading[0][0].startswith("no job can run yet: DATA_PATH's file changed since it was refused")
        assert all("fix" not in m and retry == "5" for m, retry in loading), loading
