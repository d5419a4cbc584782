"""schemathesis against the running API's own /openapi.json: at least 1,000 generated requests, no
5xx, every response (status, content type, headers, body) as the document describes it, and
schema-violating requests refused.

Runs the schemathesis CLI against a real stack (gunicorn API, one worker, real Redis) with every
check on, bar the two whose premise the API's documented design does not share (see CONFIG). The
HAR report counts the requests actually sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.chaos.load import scaled
from devstack.redis_server import find_redis_server
from devstack.paths import BIN
from devstack.stack import running_stack

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

MIN_REQUESTS = 1000

CONFIG = """
request-timeout = 30

# schemathesis flags any response slower than 10 s by default: a timed assertion, which on a shared
# 2-core machine measures the machine (plots render in ~0.5 s alone; latency is benchmarked in
# bench/, never asserted in tests). Keep only a bound that catches a hung request.
[checks]
max_response_time = 60
# A fuzzed query string can make the request line longer than gunicorn's limit_request_line (4,094
# bytes); gunicorn refuses it with 414 before the app runs (documented in docs/api.md). That is a
# rejection of bad input, like the 400s schemathesis expects by default.
negative_data_rejection.expected-statuses = [400, 401, 403, 404, 406, 414, 422, 428]

[generation]
max-examples = {examples}

# GET /analysis/<op> (one path per operation, plus the generic /analysis/{{operation}}) checks
# cross-parameter rules JSON Schema cannot state (a date range of at most 5,000 days, a road that
# is not blank after trimming); such a schema-valid request is a documented 400, not a refused
# valid request.
[[operations]]
include-path-regex = "^/analysis/"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 404]

# POST /submit and POST /jobs run the same cross-parameter rules at submit (issue 14 item 7), so
# a schema-valid body such as plot_daily_counts from 2000-01-01 to today is the same documented 400.
# The fuzzer may also send one generated Idempotency-Key with
# different bodies: the second is the documented 422 idempotency_key_reused, nothing stored.
[[operations]]
include-path-regex = "^/(submit|jobs)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 409, 422, 429]

# The diagnostic sleep holds a request for up to 60 s by design (tests only, DIAGNOSTIC_OPERATIONS=1).
[[operations]]
include-path = "/analysis/sleep"
enabled = false

"""
# DELETE /jobs/<id> of a queued job cancels it (GET then shows status "cancelled", by design, so a
# client that polls learns why its job stopped); only a finished job is deleted outright. So the
# use_after_free check (a deleted resource must 404) does not apply.
EXCLUDED_CHECKS = "use_after_free"
# One schemathesis worker: with two threads, hypothesis describing its filter lambdas calls
# ast.parse concurrently and CPython 3.11 can fail with "AST constructor recursion depth
# mismatch" (seen here), an error of the tool, not of the API.


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    with running_stack(tmp_path_factory.mktemp("fuzz"), MAX_WAIT_SECONDS="1") as stack:
        stack.start_api(web_concurrency=2)
        stack.start_worker()
        stack.wait_api(path="/readyz")
        yield stack


def _run_schemathesis(url: str, workdir, examples: int, seed: int) -> tuple[subprocess.CompletedProcess, list]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG.format(examples=examples))
    report = workdir / "report"
    cmd = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--report",
        "har",
        "--report-dir",
        str(report),
        "--max-failures",
        "20",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=workdir)
    har = next(report.glob("*.json"), None) if report.exists() else None
    return proc, (json.loads(har.read_text())["log"]["entries"] if har else [])


def _failures(proc: subprocess.CompletedProcess) -> str:
    """schemathesis's FAILURES section with each line cut to 300 characters: a fuzzed URL can be
    tens of kilobytes, and a plain tail of the output would keep only the end of it."""
    out = proc.stdout
    start = out.find("FAILURES")
    lines = (out[start:] if start >= 0 else out[-6000:]).splitlines()
    return (
        "\n".join(line if len(line) <= 300 else line[:300] + " ..." for line in lines)[:8000]
        + "\n"
        + proc.stderr[-2000:]
    )


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_5xx_and_no_spec_violation(fuzz_stack, tmp_path, figures):
    """Runs with fresh seeds until at least MIN_REQUESTS requests were sent (each run must pass)."""
    examples = scaled(100, 80)
    entries: list = []
    seeds = []
    t0 = time.monotonic()
    while len(entries) < MIN_REQUESTS and len(seeds) < 4:
        seed = int(os.environ.get("FUZZ_SEED") or time.time() * 1000) % 2**31  # FUZZ_SEED replays a run
        seeds.append(seed)
        run_dir = tmp_path / f"run{len(seeds)}"
        run_dir.mkdir()
        proc, new = _run_schemathesis(fuzz_stack.url, run_dir, examples, seed)
        entries += new
        assert proc.returncode == 0, f"schemathesis failed (seed {seed}):\n{_failures(proc)}"
    statuses: dict[int, int] = {}
    for e in entries:
        code = e["response"]["status"]
        statuses[code] = statuses.get(code, 0) + 1
    figures.update(
        requests=len(entries),
        seeds=seeds,
        seconds=round(time.monotonic() - t0, 1),
        statuses={str(k): v for k, v in sorted(statuses.items())},
    )
    assert not [c for c in statuses if c >= 500], statuses
    assert len(entries) >= MIN_REQUESTS, f"only {len(entries)} requests were generated"
