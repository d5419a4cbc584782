"""A data file that arrives (or is fixed) while the API runs is loaded off the request path: the
request that noticed it used to parse it itself, inside the process's event loop, so every request
that process served waited for the parse (a full-size file: tens of seconds, until gunicorn killed
the process for a missed heartbeat and its successor started the parse again)."""

from __future__ import annotations

import os
import threading
import time

import requests

from devstack.paths import SAMPLE
from devstack.stack import running_stack

SLOW = 2.0  # seconds: no answer may take this long, and the load must take longer (else nothing is shown)


def test_requests_answer_at_once_while_a_new_data_file_loads(tmp_path):
    data = tmp_path / "incidents.csv"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    big = tmp_path / "big.csv"
    big.write_text(lines[0] + "".join(lines[1:]) * 20, encoding="utf-8")  # 100,000 rows: seconds to parse
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1, DATA_PATH=str(data), DATA_CACHE_MODE="off")
        assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 503
        answers: list[tuple[str, float, float, int]] = []  # (path, sent, seconds, status)
        done = threading.Event()

        def probe(path: str) -> None:
            while not done.is_set():
                sent = time.monotonic()
                status = requests.get(f"{stack.url}{path}", timeout=60).status_code
                answers.append((path, sent, time.monotonic() - sent, status))
                time.sleep(0.05)

        probes = [threading.Thread(target=probe, args=(p,)) for p in ("/readyz", "/readyz", "/healthz")]
        for t in probes:
            t.start()
        try:
            os.replace(big, data)
            placed = time.monotonic()
            deadline = placed + 60
            ready = lambda: any(p == "/readyz" and s == 200 and t > placed for p, t, _, s in answers)  # noqa: E731
            while not ready() and time.monotonic() < deadline:
                time.sleep(0.1)
            loaded = time.monotonic() - placed
        finally:
            done.set()
            for t in probes:
                t.join()
        after = [(seconds, status) for _, sent, seconds, status in answers if sent > placed]
        assert loaded > SLOW, f"the load took {loaded:.1f} s: too quick to show anything"
        assert requests.get(f"{stack.url}/data", timeout=10).json()["rows"] == 100_000
        slowest = max(seconds for seconds, _ in after)
        assert slowest < SLOW, f"a request waited {slowest:.1f} s of a {loaded:.1f} s load"
        assert 503 in {status for _, status in after}  # the state as it was, while the file loaded
        print(f"\nloaded in {loaded:.1f} s; {len(after)} requests meanwhile, slowest {slowest * 1000:.0f} ms")
