"""`make up` / `make down` for real, and the tutorial's own client flow against that stack."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

import pytest
import requests

from devstack.paths import REPO_ROOT
from devstack.make_env import stack_env
from devstack.procs import free_port
from tests.support.loopback import listening_addresses, needs_ipv6

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _make_up(run_dir):
    """`make up` in ``run_dir``; (API url, run dir, environment, what up printed); `make down` after."""
    env = stack_env(str(run_dir))
    up = subprocess.run(["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield f"http://127.0.0.1:{env['PORT']}", run_dir, env, up.stdout
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def _printed_worker_command(out: str) -> str:
    """The worker command a `WORKERS=0 make up` banner prints, on the line after its heading."""
    lines = out.splitlines()
    hint = next(i for i, line in enumerate(lines) if line.startswith("A worker for this stack"))
    return lines[hint + 1].strip()


@pytest.fixture
def stack(tmp_path):
    """A stack of this test's own, for tests that stop it."""
    yield from _make_up(tmp_path / "run")


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory):
    """One stack for the tests that only read its banner or submit jobs to it (each start costs 40-50 s
    on a loaded 2-core machine); a test that stops it takes ``stack``."""
    yield from _make_up(tmp_path_factory.mktemp("shared") / "run")


def test_up_runs_everything_and_down_stops_exactly_it(stack):
    url, run_dir, env, out = stack
    assert "curl" in out and url in out
    pids = {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")}
    assert set(pids) == {"redis", "api", "worker-1", "worker-2"}
    assert all(_alive(pid) for pid in pids.values())
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    # the hint says where the metrics are (locally: the API's own port), and they are there
    assert f"Metrics: {url}/metrics (API)" in out
    assert "jobqueue_queue_depth" in requests.get(f"{url}/metrics", timeout=5).text

    # idempotent: a second `make up` starts nothing new
    again = subprocess.run(
        ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0 and "already running" in again.stdout
    assert {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")} == pids

    subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, check=True, timeout=120)
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids.values())
    assert not list((run_dir / "pids").glob("*.pid"))


def test_tutorial_client_flow_unchanged(shared_stack):
    """The COE 332 tutorial's client: POST /submit, then poll /status/<id> until complete."""
    url = shared_stack[0]
    submitted = []
    for body in (
        {"operation": "incident_count_by_date", "params": {"date": "2024-03-06"}},
        {"operation": "top_locations", "params": {"n": 3}},
        {"operation": "average_response_time", "params": {}},
        {"operation": "unique_issues", "params": {}},
        {"operation": "incidents_by_road", "params": {"road": "CONGRESS"}},
    ):
        r = requests.post(f"{url}/submit", json=body, timeout=5)
        assert r.status_code == 202
        assert r.json()["status"] == "submitted"
        submitted.append((body["operation"], r.json()["job_id"]))

    expected_key = {
        "incident_count_by_date": "incident_count",
        "top_locations": "top_locations",
        "average_response_time": "avg_response",
        "unique_issues": "unique_issues",
        "incidents_by_road": "count",
    }
    for operation, job_id in submitted:
        deadline = time.monotonic() + 60
        while True:
            status = requests.get(f"{url}/status/{job_id}", timeout=5).json()
            if status["status"] == "complete" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["status"] == "complete", status
        assert expected_key[operation] in status["result"]


def test_banner_hint_uses_the_real_port(shared_stack):
    url, _, _, out = shared_stack
    hint = [line for line in out.splitlines() if "jobqueue submit" in line]
    assert hint and all(f"--url {url}" in line for line in hint), out


def test_stop_hint_stops_a_stack_in_its_own_run_dir(stack):
    """The printed stop command, run as printed from a shell without the make-up variables, stops
    this stack (a bare `make down` looks in the default RUN_DIR and would leave it running)."""
    _, run_dir, env, out = stack
    [hint] = [line.split("Stop it with: ", 1)[1] for line in out.splitlines() if line.startswith("Stop it with: ")]
    pids = [int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")]
    shell_env = {k: v for k, v in env.items() if k not in ("RUN_DIR", "PORT", "REDIS_PORT", "WORKER_METRICS_BASE")}
    subprocess.run(["bash", "-c", hint], cwd=REPO_ROOT, env=shell_env, check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids and not any(_alive(pid) for pid in pids), hint


def test_up_refuses_an_api_port_another_program_answers_on(tmp_path):
    """Docs walk-through #2: on a shared VM a classmate's API answered our readiness check and
    `make up` said "ready" while our own API had died with "Address already in use"."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status": "ready"}')

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    env = stack_env(str(tmp_path / "run"), PORT=str(port), READY_TIMEOUT="30")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode != 0 and "ready" not in up.stdout.split("waiting", 1)[-1], up.stdout
        assert f"port {port} is taken by another program; set PORT=" in up.stderr, up.stderr
        # refused before anything starts: it used to start this stack's Redis first and leave it running
        assert "started" not in up.stdout, up.stdout
        assert not [p for p in (tmp_path / "run" / "pids").glob("*.pid") if _alive(int(p.read_text()))]
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        other.shutdown()
        other.server_close()


def test_make_lock_finds_the_uv_make_setup_installed():
    """Docs walk-through #1: `make lock` called a bare `uv` (command not found) though `make setup`
    puts uv in .tools/bin when none is on PATH."""
    dry = subprocess.run(
        ["make", "-n", "lock"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert dry.returncode == 0, dry.stderr
    assert ".tools/bin/uv lock" in dry.stdout, dry.stdout


def test_up_refuses_an_api_metrics_port_that_is_a_workers(tmp_path):
    """README's `API_METRICS_PORT=9102 make up` with the default WORKER_METRICS_BASE=9101 and two
    workers: worker 2 bound 9102 first and the API exited with "Address already in use" (make up
    then printed only gunicorn's retries). Now it refuses at once, naming both settings, with the status
    of every other setting refused (2: it was 1, a failure's, after making the run folder)."""
    base = free_port(2)
    env = stack_env(
        str(tmp_path / "run"),
        WORKER_METRICS_BASE=str(base),
        API_METRICS_PORT=str(base + 1),
        WORKERS="2",
        READY_TIMEOUT="60",
    )
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 2, up.stdout + up.stderr
        assert f"API_METRICS_PORT={base + 1} is worker 2's metrics port" in up.stderr, up.stdout + up.stderr
        assert not (tmp_path / "run").exists()  # refused before making anything
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_up_refuses_a_worker_metrics_port_another_program_holds(tmp_path):
    """On a shared VM a classmate's worker held our WORKER_METRICS_BASE: our worker 1 ran without
    metrics ("cannot serve metrics" in its log only) and `make up` said ready and pointed at that port,
    where the other stack's worker answered. Now it refuses before starting anything, naming the port."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    base = holder.getsockname()[1]
    env = stack_env(str(tmp_path / "run"), WORKER_METRICS_BASE=str(base), READY_TIMEOUT="60")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode != 0, up.stdout
        assert f"port {base} (worker 1's metrics, WORKER_METRICS_BASE={base}) is taken" in up.stderr, up.stderr
        assert not list((tmp_path / "run" / "pids").glob("*.pid"))
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        holder.close()


_NOT_NUMBERS = ["WORKERS", "REDIS_PORT", "WORKER_METRICS_BASE", "READY_TIMEOUT", "PORT"]


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        *((var, "abc", f"{var} must be a whole number, got 'abc'") for var in _NOT_NUMBERS),
        ("PORT", "70000", "PORT must be a port number (1-65535), got 70000"),
        ("REDIS_PORT", "0", "REDIS_PORT must be a port number (1-65535), got 0"),
        ("WORKER_METRICS_BASE", "65535", "worker 2's metrics port would be 65536 (WORKER_METRICS_BASE=65535"),
        # as elsewhere: the mistake named, with the bare number (they said only "must be a whole number")
        (
            "READY_TIMEOUT",
            "2m",
            "READY_TIMEOUT takes seconds as a plain number, without the unit, got '2m': write READY_TIMEOUT=120",
        ),
        (
            "READY_TIMEOUT",
            "90s",
            "READY_TIMEOUT takes seconds as a plain number, without the unit, got '90s': write READY_TIMEOUT=90",
        ),
        (
            "PORT",
            '"7300"',
            "PORT has quotes around it, part of the value here (no shell removed them): write PORT=7300",
        ),
        (
            "WORKERS",
            "'3'",
            "WORKERS has quotes around it, part of the value here (no shell removed them): write WORKERS=3",
        ),
        ("PORT", "7300s", "PORT must be a whole number, got '7300s'"),  # a port has no unit
    ],
)
def test_up_refuses_a_bad_number_before_starting_anything(tmp_path, var, value, words):
    """`WORKERS=abc make up` started no worker and printed "abc workers" (`seq abc` failed quietly);
    `REDIS_PORT=abc` was named only as a bad REDIS_URL after ~40 s of connection retries;
    `PORT=70000` started Redis and the workers, then the API stopped on its own range check: the
    stack was left running for a `make down`, after READY_TIMEOUT of waiting."""
    env = stack_env(str(tmp_path / "run"), **{"READY_TIMEOUT": "20", var: value})  # var may be READY_TIMEOUT itself
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 2, up.stdout + up.stderr
        assert f"up: {words}" in up.stderr, up.stderr
        assert not list((tmp_path / "run" / "pids").glob("*.pid"))
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_a_leading_zero_is_the_same_port_not_an_octal_one(tmp_path):
    """`WORKER_METRICS_BASE=09101` is how a port is sometimes copied; bash read 0-prefixed numbers
    as octal: worker 1's metrics went to a port nobody named (07514 -> 3916), and an 8 or 9 in the
    number stopped the script with "value too great for base"."""
    env = stack_env(str(tmp_path / "run"), WORKERS="1")
    port, base = env["PORT"], env["WORKER_METRICS_BASE"]
    env.update(PORT=f"0{port}", WORKER_METRICS_BASE=f"0{base}")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"API http://127.0.0.1:{port}," in up.stdout, up.stdout
        assert f"http://127.0.0.1:{base}/metrics (worker 1" in up.stdout, up.stdout
        assert requests.get(f"http://127.0.0.1:{base}/metrics", timeout=5).status_code == 200
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    ("workers", "shown", "worker_metrics"),
    [("0", "no workers (jobs wait until a jobqueue-worker runs)", False), ("1", "1 worker (", True)],
)
def test_the_banner_counts_the_workers_it_started(tmp_path, workers, shown, worker_metrics):
    """WORKERS=0 (the workers run by hand) printed "0 workers" and a worker 1 metrics URL nothing
    served; WORKERS=1 printed "1 workers"."""
    env = stack_env(str(tmp_path / "run"), WORKERS=workers)
    base = env["WORKER_METRICS_BASE"]
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f", {shown}" in up.stdout, up.stdout
        assert (f":{base}/metrics" in up.stdout) is worker_metrics, up.stdout
        if worker_metrics:
            assert requests.get(f"http://127.0.0.1:{base}/metrics", timeout=5).status_code == 200
        else:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{base}/metrics", timeout=5)
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize("given", ["other", "0"])
def test_a_worker_metrics_port_in_the_environment_is_named_not_dropped(tmp_path, given):
    """WORKER_METRICS_PORT=9200 make up (the worker's own setting, from docs/metrics.md) was dropped
    without a word: worker 1 served its metrics on WORKER_METRICS_BASE, where nobody looked."""
    env = stack_env(str(tmp_path / "run"), WORKERS="1")
    base = env["WORKER_METRICS_BASE"]
    env["WORKER_METRICS_PORT"] = str(free_port()) if given == "other" else "0"
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        said = f"up: WORKER_METRICS_PORT={env['WORKER_METRICS_PORT']} is not used"
        assert said in up.stderr, up.stderr
        assert f"WORKER_METRICS_BASE={base}" in up.stderr, up.stderr
        if given == "other":
            assert f"write WORKER_METRICS_BASE={env['WORKER_METRICS_PORT']}" in up.stderr, up.stderr
        assert requests.get(f"http://127.0.0.1:{base}/metrics", timeout=5).status_code == 200
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    ("settings", "metrics_host"),
    [
        ({}, "127.0.0.1"),  # make up's default BIND_HOST
        pytest.param({"WORKER_METRICS_HOST": "::1"}, "::1", marks=needs_ipv6),  # as make up's workers take it
    ],
)
def test_with_no_workers_the_banner_prints_a_worker_command_that_joins_this_stack(tmp_path, settings, metrics_host):
    """`WORKERS=0 make up` said jobs wait "until a jobqueue-worker runs", and a bare
    `.venv/bin/jobqueue-worker` reads the defaults: Redis on 6379 (none, or on a shared VM a
    classmate's, whose jobs it ran) while this stack's jobs waited. The banner's command, run as
    printed from a shell without the stack's settings, runs this stack's jobs, and serves its metrics
    where make up's workers would, on loopback only: without make up's BIND_HOST it had the worker's
    own default, 0.0.0.0, every interface."""
    env = {k: v for k, v in stack_env(str(tmp_path / "run")).items() if k not in ("BIND_HOST", "WORKER_METRICS_HOST")}
    env.update(WORKERS="0", QUEUE_NAME="u15-class", **settings)
    worker = None
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        command = _printed_worker_command(up.stdout)
        assert command.endswith(".venv/bin/jobqueue-worker"), command
        shell = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REDIS_URL", "QUEUE_NAME", "DATA_PATH", "BIND_HOST", "WORKER_METRICS_HOST")
        }
        worker = subprocess.Popen(
            ["bash", "-c", command],
            cwd=REPO_ROOT,
            env={**shell, "SHUTDOWN_GRACE_SECONDS": "5"},
            stdout=(tmp_path / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{env['PORT']}"
        job = requests.post(
            f"{url}/submit?wait=60", json={"operation": "top_locations", "params": {"n": 1}}, timeout=70
        ).json()
        assert job["status"] == "complete", (job, (tmp_path / "worker.log").read_text()[-3000:])
        host = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
        metrics = requests.get(f"http://{host}:{env['WORKER_METRICS_BASE']}/metrics", timeout=5)
        assert "jobqueue_worker" in metrics.text
        assert listening_addresses(int(env["WORKER_METRICS_BASE"])) == {metrics_host}, command
    finally:
        if worker:
            worker.terminate()
            worker.wait(timeout=60)
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_bound_for_other_machines_the_banner_gives_an_allowed_hosts_that_lets_them_in(tmp_path):
    """`BIND_HOST=0.0.0.0 make up` is for other machines, but the API answers only the Host names in
    ALLOWED_HOSTS (loopback by default): by this machine's name or address every request got 400
    host_not_allowed, and the banner said nothing of it. It now says so with a value to use, which,
    given as printed, lets a request by this machine's address in."""
    import re
    import socket

    address = next(
        (a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split() if "." in a),
        None,
    )
    if address is None:
        pytest.skip("this machine has no IPv4 address but loopback")
    env = stack_env(str(tmp_path / "run"), WORKERS="0", BIND_HOST="0.0.0.0")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        hint = re.search(r"From another machine: .*\n.*e\.g\. ALLOWED_HOSTS=(\S+)", up.stdout)
        assert hint, up.stdout
        url = f"http://{address}:{env['PORT']}"
        assert requests.get(f"{url}/jobs", timeout=10).status_code == 400  # as the banner says
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        env["ALLOWED_HOSTS"] = hint.group(1)
        again = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "From another machine" not in again.stdout
        assert requests.get(f"{url}/jobs", timeout=10).status_code == 200
        assert requests.get(f"http://{socket.gethostname()}:{env['PORT']}/jobs", timeout=10).status_code == 200
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_bound_to_loopback_the_banner_says_nothing_of_other_machines(shared_stack):
    assert "From another machine" not in shared_stack[3]


def test_up_with_another_port_than_its_running_api_refuses_not_waits_elsewhere(tmp_path):
    """A second `make up` whose PORT differs from the running stack's (a bare `make up` after
    `PORT=7505 make up`) kept the running API, then waited on the new port: READY_TIMEOUT for
    nothing, or "ready" at once when a classmate's API answered there."""
    env = stack_env(str(tmp_path / "run"), WORKERS="1")
    try:
        first = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert first.returncode == 0, first.stdout + first.stderr
        other = str(free_port())
        again = subprocess.run(
            ["bash", "scripts/up.sh"],
            cwd=REPO_ROOT,
            env={**env, "PORT": other, "READY_TIMEOUT": "20"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 2, again.stdout + again.stderr
        assert (
            "up: the api already running (pid" in again.stderr
            and f"listens on 127.0.0.1:{env['PORT']}, not PORT={other}" in again.stderr
            and f"RUN_DIR={env['RUN_DIR']} make down first" in again.stderr
        ), again.stderr
        assert "waiting" not in again.stdout, again.stdout
        # the same settings again are still fine (idempotent)
        same = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert same.returncode == 0, same.stdout + same.stderr
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


# what `make up` says when the API answers that DATA_PATH did not load: only a change to the file makes
# it ready, so up.sh ends the wait at once instead of waiting out READY_TIMEOUT
NO_DATA = "up: the API did not load its data (DATA_PATH); last lines of its log:"


def test_a_failed_up_says_how_to_start_over_with_other_settings(tmp_path):
    """`DATA_PATH=<typo> make up` failed (the API never ready) and left its processes running; the
    `make up` with the path fixed then said "already running" for each, kept the API with the old
    path and failed the same way, naming the old path, with nothing saying `make down` first."""
    env = stack_env(str(tmp_path / "run"), WORKERS="1")
    try:
        bad = subprocess.run(
            ["bash", "scripts/up.sh"],
            cwd=REPO_ROOT,
            env={**env, "DATA_PATH": str(tmp_path / "no-such.csv"), "READY_TIMEOUT": "300"},  # never ready
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert bad.returncode != 0, bad.stdout
        assert NO_DATA in bad.stderr, bad.stderr  # said at once, not after READY_TIMEOUT
        hint = f"stop it with: RUN_DIR={env['RUN_DIR']} make down (then make up again)"
        assert hint in bad.stderr, bad.stderr
        # the API left running keeps the missing path, so this one is never ready either: it prints what
        # is checked here at once, then waited out the whole READY_TIMEOUT for nothing; now it ends the
        # wait as soon as the API answers "data": false (a regression overruns the run's 180 s timeout)
        again = subprocess.run(
            ["bash", "scripts/up.sh"],
            cwd=REPO_ROOT,
            env={**env, "READY_TIMEOUT": "300"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "up: api already running (pid" in again.stdout, again.stdout
        assert f"RUN_DIR={env['RUN_DIR']} make down first to change them" in again.stdout, again.stdout
        assert NO_DATA in again.stderr, again.stderr
        # the hint, followed, starts over with the settings given now
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        fixed = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_a_redis_url_in_the_environment_is_the_redis_used_and_named(tmp_path):
    """A REDIS_URL left exported (the tutorial's `REDIS_URL=redis://$REDIS_IP:6379`) made `make up`
    start its own redis-server, name it in the banner ("Redis 127.0.0.1:<REDIS_PORT>"), and run the
    API and workers on the other Redis; on a shared VM a classmate's, whose workers took our jobs.
    Now that Redis is the one used and named (its password masked), and none is started for nothing."""
    from devstack.redis_server import RedisServer
    from jobqueue import keys

    other = RedisServer(tmp_path / "other", password="s3cret").start()
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", REDIS_URL=f"redis://:s3cret@127.0.0.1:{other.port}")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Redis redis://***@127.0.0.1:{other.port} (from REDIS_URL" in up.stdout, up.stdout
        assert "s3cret" not in up.stdout + up.stderr
        assert f"127.0.0.1:{env['REDIS_PORT']}" not in up.stdout
        assert {p.stem for p in (run_dir / "pids").glob("*.pid")} == {"api", "worker-1"}
        url = f"http://127.0.0.1:{env['PORT']}"
        job = requests.post(
            f"{url}/submit?wait=30", json={"operation": "top_locations", "params": {"n": 1}}, timeout=40
        )
        assert job.json()["status"] == "complete", job.text
        assert other.client().exists(keys.job(job.json()["job_id"]))
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        other.stop()


# characters a password in a URL must %-escape: the test looks for it both ways
REDIS_PASSWORD = "p@ss:w/rd"
REDIS_PASSWORD_ESCAPED = "p%40ss%3Aw%2Frd"


@pytest.mark.parametrize("form", ["query", "user-info", "REDIS_PASSWORD"])
def test_a_redis_password_is_printed_in_no_form(tmp_path, form):
    """The banner masked a password only as `redis://:pw@host`: one given as the query argument
    redis-py also reads (`REDIS_URL='redis://host:port?password=...' make up`) was printed in clear,
    in the "REDIS_URL is set" line and the banner's Redis, and in the worker command of WORKERS=0.
    Now it is `***` in every form, the rest of the URL as given; nothing make up or make down prints,
    nor the logs, holds the password, escaped or not."""
    from devstack.redis_server import RedisServer

    other = RedisServer(tmp_path / "other", password=REDIS_PASSWORD).start()
    plain = f"redis://127.0.0.1:{other.port}"
    settings, shown = {
        "query": ({"REDIS_URL": f"{plain}?password={REDIS_PASSWORD_ESCAPED}"}, f"{plain}?password=***"),
        "user-info": (
            {"REDIS_URL": f"redis://:{REDIS_PASSWORD_ESCAPED}@127.0.0.1:{other.port}"},
            f"redis://***@127.0.0.1:{other.port}",
        ),
        "REDIS_PASSWORD": ({"REDIS_URL": plain, "REDIS_PASSWORD": REDIS_PASSWORD}, plain),
    }[form]
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="0", **settings)
    printed = ""
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        printed = up.stdout + up.stderr
        assert up.returncode == 0, printed
        assert f"up: REDIS_URL is set: the API and workers use that Redis, {shown} (from REDIS_URL" in up.stdout
        assert f"Redis {shown} (from REDIS_URL" in up.stdout, up.stdout
        assert shlex.split(_printed_worker_command(up.stdout))[0] == f"REDIS_URL={shown}", up.stdout
        # the command is to be completed by hand then, and says so
        assert ("its REDIS_URL shows the password as ***" in up.stdout) is (form != "REDIS_PASSWORD")
    finally:
        down = subprocess.run(
            ["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        other.stop()
    printed += down.stdout + down.stderr
    printed += "".join(log.read_text(errors="replace") for log in (run_dir / "logs").glob("*"))
    assert REDIS_PASSWORD not in printed and REDIS_PASSWORD_ESCAPED not in printed, printed


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        (  # a Redis that does not answer: named before anything starts
            "redis://127.0.0.1:{port}?password=" + REDIS_PASSWORD_ESCAPED,
            1,
            "up: the Redis REDIS_URL names (redis://127.0.0.1:{port}?password=***) does not answer",
        ),
        (  # no URL yet: refused by the settings, naming it
            "127.0.0.1:{port}?password=" + REDIS_PASSWORD_ESCAPED,
            2,
            "up: configuration error: REDIS_URL must start with redis://, rediss:// or unix://, "
            "got '127.0.0.1:{port}?password=***'",
        ),
    ],
)
def test_a_refused_redis_url_is_named_without_its_password(tmp_path, url, status, words):
    port = free_port()
    env = stack_env(str(tmp_path / "run"), WORKERS="1", READY_TIMEOUT="20", REDIS_URL=url.format(port=port))
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == status, up.stdout + up.stderr
        assert words.format(port=port) in up.stderr, up.stderr
        assert REDIS_PASSWORD_ESCAPED not in up.stdout + up.stderr and REDIS_PASSWORD not in up.stdout + up.stderr
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (  # the tutorial's host:port, without the scheme
            {"REDIS_URL": "127.0.0.1:6379"},
            "REDIS_URL must start with redis://, rediss:// or unix://, got '127.0.0.1:6379': e.g. REDIS_URL=redis://127.0.0.1:6379",
        ),
        (
            {"LOG_LEVEL": "verbose"},
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case; WARN and FATAL are WARNING and CRITICAL), got 'verbose'",
        ),
        ({"REDIS_URL": "redis://127.0.0.1:6379/3"}, "REDIS_URL selects db 3"),
    ],
)
def test_up_refuses_a_setting_the_services_refuse_before_starting_anything(tmp_path, settings, words):
    """A setting the API and the workers refuse at start was named only by the API's log: a malformed
    REDIS_URL after ~90 s (make up's Redis wait, then the API's exit), a LOG_LEVEL=verbose after its
    Redis, API and workers had started (exit 1, and "what started is still running")."""
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", READY_TIMEOUT="20", **settings)
    try:
        started = time.monotonic()
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        took = time.monotonic() - started
        assert up.returncode == 2, up.stdout + up.stderr
        assert f"up: configuration error: {words}" in up.stderr, up.stderr
        assert not list(run_dir.glob("pids/*.pid")), "something was started"
        assert took < 20, f"took {took:.0f} s"
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize("password", ["", "s3cret"])
def test_up_refuses_a_redis_url_that_does_not_answer_before_starting_anything(tmp_path, password):
    """`REDIS_URL=redis://127.0.0.1:<nothing there>` (or a Redis that wants a password none was given
    for) started the API and the workers and printed dots for 3 minutes (100 tries of Redis, then
    READY_TIMEOUT), then the API's log. Now Redis's own answer, within seconds, nothing started."""
    from devstack.redis_server import RedisServer

    other = RedisServer(tmp_path / "other", password=password).start() if password else None
    port = other.port if other else free_port()
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", READY_TIMEOUT="20", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        took = time.monotonic() - started
        assert up.returncode == 1, up.stdout + up.stderr
        # Redis 7's refusal of a client without the password (as the README quotes it), said at once
        why = (
            "Redis refused this service's credentials: HELLO must be called with the client already authenticated"
            if password
            else f"Error 111 connecting to 127.0.0.1:{port}"
        )
        assert f"up: the Redis REDIS_URL names (redis://127.0.0.1:{port}/0) does not answer: {why}" in up.stderr, (
            up.stderr
        )
        assert "unset REDIS_URL for make up's own Redis; nothing was started" in up.stderr, up.stderr
        assert not list(run_dir.glob("pids/*.pid")), "something was started"
        assert took < 40, f"took {took:.0f} s"
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        if other:
            other.stop()


def test_a_failed_up_shows_its_own_log_lines_not_an_earlier_runs(tmp_path):
    """The API's log is appended to run after run, and a failed `make up` showed its last 30 lines:
    after `make down` and a `make up` with another DATA_PATH, the first path's error was shown again,
    as if the fix had not been taken."""
    # never ready either way; READY_TIMEOUT only bounds a hang: an API that answers "data": false ends
    # the wait at once (NO_DATA), well within the runs' 180 s timeout
    env = stack_env(str(tmp_path / "run"), WORKERS="0", READY_TIMEOUT="300")
    try:
        for name in ("first-typo.csv", "second-typo.csv"):
            subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
            bad = subprocess.run(
                ["bash", "scripts/up.sh"],
                cwd=REPO_ROOT,
                env={**env, "DATA_PATH": str(tmp_path / name)},
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert bad.returncode != 0, bad.stdout
            assert NO_DATA in bad.stderr and name in bad.stderr, bad.stderr
        assert "first-typo.csv" not in bad.stderr, bad.stderr
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_down_with_nothing_under_its_run_dir_says_so(tmp_path):
    """A bare `make down` for a stack started with RUN_DIR=... printed nothing and exited 0, as if it
    had stopped it."""
    env = {**os.environ, "RUN_DIR": str(tmp_path / "empty")}
    down = subprocess.run(
        ["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0
    assert f"down: nothing to stop under {tmp_path / 'empty'}" in down.stdout, down.stdout


@pytest.mark.parametrize("grace", ["1e1", "2.5", ".5"])
def test_down_stops_workers_whatever_form_of_number_their_grace_is_given_in(tmp_path, grace):
    """SHUTDOWN_GRACE_SECONDS is a number as the workers read it (float: 1e1 is 10 s). down.sh did
    shell arithmetic on it: with 1e1 it stopped no worker, said nothing and exited 0."""
    import threading

    (tmp_path / "pids").mkdir()
    worker = subprocess.Popen(["sleep", "300"])
    threading.Thread(target=worker.wait, daemon=True).start()  # reaped at once, as init reaps a worker
    try:
        (tmp_path / "pids" / "worker-1.pid").write_text(f"{worker.pid}\n")
        env = {**os.environ, "RUN_DIR": str(tmp_path), "SHUTDOWN_GRACE_SECONDS": grace}
        down = subprocess.run(
            ["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert worker.wait(timeout=5) == -15, down.stdout + down.stderr  # SIGTERM, not left running
        assert f"stopped worker-1 (pid {worker.pid})" in down.stdout and not down.stderr, down.stdout + down.stderr
        assert "ignored SIGTERM" not in down.stdout
    finally:
        worker.kill()


@pytest.mark.parametrize("script_name", ["/class/jq", "/class/jq/"])
def test_up_under_script_name_waits_and_points_inside_the_prefix(tmp_path, script_name):
    """`SCRIPT_NAME=/class/jq make up` (docs/ui.md's prefix, told to the API) waited for `/readyz`
    outside the prefix, where gunicorn answers its own 500, for READY_TIMEOUT (90 s), then failed with
    the API running. Now it waits under the prefix and its banner's URLs carry it."""
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", SCRIPT_NAME=script_name)
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"http://127.0.0.1:{env['PORT']}/class/jq"
        assert f"API {url}," in up.stdout and f"{url}/ui/" in up.stdout and "jq//" not in up.stdout, up.stdout
        job = requests.post(
            f"{url}/submit?wait=30", json={"operation": "top_locations", "params": {"n": 1}}, timeout=40
        )
        assert job.json()["status"] == "complete", job.text
        # outside the prefix, as docs/ui.md says: a JSON 404 naming the prefix (it was a 500
        # internal_error with a traceback in the log, for a client's mistake)
        outside = requests.get(f"http://127.0.0.1:{env['PORT']}/healthz", timeout=10)
        assert outside.status_code == 404 and outside.json()["error"] == "not_found", outside.text
        assert outside.json()["message"] == (
            "outside the API's path prefix (SCRIPT_NAME): put the prefix before the route: "
            f"Request path '/healthz' does not start with SCRIPT_NAME '{script_name}'"
        ), outside.text
        log = (run_dir / "logs" / "api.log").read_text()
        assert "Request path '/healthz' does not start with SCRIPT_NAME" in log and "Traceback" not in log, log
        ui = " ".join((REPO_ROOT / "docs" / "ui.md").read_text().split())
        assert "answered `404` `not_found` (JSON" in ui and "does not start with SCRIPT_NAME '/class/jq'" in ui
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    "bind_host, url_host",
    [pytest.param(h, "[::1]", marks=needs_ipv6) for h in ("::1", "[::1]")] + [("localhost", "127.0.0.1")],
)
def test_up_waits_for_and_points_at_the_address_bind_host_names(tmp_path, bind_host, url_host):
    """`BIND_HOST=::1 make up` waited READY_TIMEOUT (90 s) on 127.0.0.1, where nothing listened, and
    failed with the API up on [::1]. Now the wait, the port checks and the banner use the address
    the API binds (bracketed in URLs), and so do the workers' metrics (WORKER_METRICS_HOST unset)."""
    env = stack_env(str(tmp_path / "run"), WORKERS="1", BIND_HOST=bind_host)
    env.pop("WORKER_METRICS_HOST", None)
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"http://{url_host}:{env['PORT']}"
        assert f"waiting for {url}/readyz" in up.stdout and f"API {url}," in up.stdout, up.stdout
        worker_metrics = f"http://{url_host}:{env['WORKER_METRICS_BASE']}/metrics"
        assert f"{worker_metrics} (worker 1" in up.stdout, up.stdout
        job = requests.post(
            f"{url}/submit?wait=30", json={"operation": "top_locations", "params": {"n": 1}}, timeout=40
        )
        assert job.json()["status"] == "complete", job.text
        assert "jobqueue_jobs_processed_total" in requests.get(worker_metrics, timeout=10).text
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    "variable, host, words",
    [
        ("BIND_HOST", "192.0.2.1", "BIND_HOST '192.0.2.1' is not an address of this machine"),
        ("BIND_HOST", "999.1.1.1", "BIND_HOST must be an IP address"),
        ("WORKER_METRICS_HOST", "192.0.2.1", "WORKER_METRICS_HOST '192.0.2.1' is not an address of this machine"),
    ],
)
def test_up_refuses_a_host_it_cannot_serve_before_starting_anything(tmp_path, variable, host, words):
    """A BIND_HOST of another machine started Redis, the API (which exited 2) and the workers, then
    waited on 127.0.0.1 until READY_TIMEOUT: now it is refused at once, exit 2, nothing started."""
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", READY_TIMEOUT="20", **{variable: host})
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert up.returncode == 2, up.stdout + up.stderr
        assert f"up: configuration error: {words}" in up.stderr, up.stderr
        assert not list(run_dir.glob("pids/*.pid")), "something was started"
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def test_with_tokens_the_banner_commands_work_as_printed(tmp_path):
    """`API_TOKEN=... API_TOKENS=... make up` (the README's settings for a class) printed the same
    curl and CLI lines as without tokens: every one answered 401. The banner now says to export
    JOBQUEUE_TOKEN and its commands carry it; run as printed with a student's token, each works."""
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), WORKERS="1", API_TOKEN="admin-banner-tok", API_TOKENS="alice:alice-banner-tok")
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert up.returncode == 0, up.stdout + up.stderr
        lines = up.stdout.splitlines()
        start = lines.index("Try:") + 1
        end = next(i for i, line in enumerate(lines) if line.startswith("In a browser:"))
        commands = "\n".join(lines[start:end]).replace(" \\\n", " ").splitlines()
        shell_env = {**env, "JOBQUEUE_TOKEN": "alice-banner-tok"}
        answers = []
        job_id = None
        for command in commands:
            if "<job_id>" in command:
                command = command.replace("<job_id>", job_id)
            r = subprocess.run(
                ["bash", "-c", command], cwd=REPO_ROOT, env=shell_env, capture_output=True, text=True, timeout=90
            )
            answers.append((command, r.returncode, r.stdout[:200], r.stderr[-200:]))
            assert r.returncode == 0 and "unauthorized" not in r.stdout + r.stderr, answers
            if "/submit" in command:
                job_id = json.loads(r.stdout)["job_id"]
        assert len(commands) == 5 and job_id, commands
        assert "  export JOBQUEUE_TOKEN=<your token>" in lines, up.stdout
    finally:
        subprocess.run(["bash", "scripts/down.sh"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
