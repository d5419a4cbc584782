"""Settings parsing and the job store, against a real Redis."""

from __future__ import annotations

import os
import subprocess

import pytest

from jobqueue import keys
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.jobs import JobStatus, JobStore, is_valid_job_id
from jobqueue.queue import JobQueue
from jobqueue.settings import SPEC, SettingsError, load_settings


def test_defaults_parse():
    s = load_settings({})
    assert s.port == 5000 and s.redis_jobs_db == 0 and s.redis_queue_db == 1
    assert s.job_lease_seconds == 30 and s.job_ttl_seconds == 7 * 24 * 3600
    assert s.diagnostic_operations is False and s.result_cache is True


@pytest.mark.parametrize(
    "name,value",
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("JOB_LEASE_SECONDS", "nan"),
        ("RESULT_CACHE", "maybe"),
        ("REDIS_URL", "localhost:6379"),
        ("LOG_LEVEL", "LOUD"),
        ("ALLOWED_HOSTS", ""),  # every request but the probes answered 400 host_not_allowed
        ("ALLOWED_HOSTS", " , "),
    ],
)
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_every_variable_is_documented_in_readme():
    from devstack.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name in SPEC if f"`{name}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_job_roundtrip_and_ttl(redis_url):
    s = load_settings({"REDIS_URL": redis_url, "JOB_TTL_SECONDS": "120"})
    store = JobStore(jobs_redis(s), s.job_ttl_seconds)
    job = store.create("top_locations", {"n": 3}, dataset="abc")
    assert is_valid_job_id(job.id)
    got = store.get(job.id)
    assert got == job and got.status is JobStatus.SUBMITTED
    assert store.redis.ttl(keys.job(job.id)) == -1  # no expiry while not final
    got.status, got.result = JobStatus.COMPLETE, {"top_locations": {"A": 2}}
    store.save(got)
    assert 0 < store.redis.ttl(keys.job(job.id)) <= 120
    assert store.get(job.id).public()["result"] == {"top_locations": {"A": 2}}
    assert [j.id for j in store.page().jobs] == [job.id]
    assert store.delete(job.id) and store.get(job.id) is None


def test_queue_carries_plain_ids_in_queue_db(redis_url):
    s = load_settings({"REDIS_URL": redis_url})
    q = JobQueue(queue_redis(s), s.queue_name)
    q.put("a", "b")
    assert q.depth() == 2
    raw = queue_redis(s).lrange(keys.queue("jobs"), 0, -1)
    assert raw == ["a", "b"]  # plain text, no pickle framing
    assert jobs_redis(s).dbsize() == 0


@pytest.mark.parametrize(
    "raw", ["alice", "alice:", ":s3cret", "alice:s3cret,bob", "alice:s3cret, :x", "alice:same,bob:same"]
)
def test_malformed_named_tokens_stop_the_program_without_showing_a_token(raw):
    """`API_TOKENS=alice` (no token) used to be dropped silently: tokens were then required and none
    was valid, so every user was locked out with a 401 and nothing said why. Two names sharing one
    token would make one user's jobs the other's."""
    with pytest.raises(SettingsError, match="API_TOKENS") as err:
        load_settings({"API_TOKENS": raw})
    assert "s3cret" not in str(err.value) and "same" not in str(err.value).replace("the same token", "")


def test_named_tokens_that_are_fine_or_blank_load():
    assert load_settings({"API_TOKENS": "alice:a1, bob:b:2,"}).api_tokens == "alice:a1, bob:b:2,"
    assert load_settings({"API_TOKENS": " , "}).api_tokens == ""  # nothing named: no token required
    with pytest.raises(SettingsError, match="admin API_TOKEN"):
        load_settings({"API_TOKEN": "root", "API_TOKENS": "alice:a1,bob:root"})


def test_a_lower_bound_alone_is_said_as_such():
    with pytest.raises(SettingsError, match=r"DATA_MAX_BYTES must be at least 1, got 0$"):
        load_settings({"DATA_MAX_BYTES": "0"})


def _start(program: str, timeout: float, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``program`` (``jobqueue-api``, or ``jobqueue-worker --burst``) with ``settings`` on top of
    this environment, on a port of its own, and return how it ended (these tests expect it to stop
    at start)."""
    from devstack.paths import BIN
    from devstack.procs import free_port

    env = {**os.environ, "PORT": str(free_port()), "BIND_HOST": "127.0.0.1", "WORKER_METRICS_PORT": "0", **settings}
    command = [str(BIN / program)] + (["--burst"] if program == "jobqueue-worker" else [])
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_api_stops_at_start_on_malformed_named_tokens():
    run = _start("jobqueue-api", timeout=120, API_TOKENS="alice")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "API_TOKENS entry 1 of 1 is not name:token" in run.stderr, run.stderr


def test_an_admin_token_read_from_a_file_loses_its_newline():
    """`kubectl create secret generic ... --from-file=api-token=token.txt` keeps the file's newline
    (the API side: tests/api/test_ownership.py)."""
    assert load_settings({"API_TOKEN": "s3cret\n"}).api_token == "s3cret"


def test_a_redis_password_from_a_secret_file_with_its_newline_still_logs_in(tmp_path):
    """`redis.auth.existingSecret` made with `--from-file`: the chart's Redis reads the file through
    `$(sed ...)`, which drops the last newline, while REDIS_PASSWORD kept it: WRONGPASS, never ready."""
    from devstack.redis_server import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("needs redis-server (make setup)")
    server = RedisServer(tmp_path / "redis", password="pw with spaces").start()
    try:
        settings = load_settings({"REDIS_URL": server.url, "REDIS_PASSWORD": "pw with spaces\n"})
        assert settings.redis_password == "pw with spaces"
        assert jobs_redis(settings).ping() and queue_redis(settings).ping()
    finally:
        server.stop()


@pytest.mark.parametrize("raw", ["", " ", "jobs ", " jobs", "my jobs", "a*b", "jobs[1]", 'x"y', "jobs\n", "tâches"])
def test_a_queue_name_the_key_layout_cannot_carry_stops_the_programs(raw):
    """QUEUE_NAME='' (or ' jobs') used to start every program on a queue of its own: a worker on
    hotqueue: waited forever for jobs the API put elsewhere."""
    with pytest.raises(SettingsError, match="QUEUE_NAME must be letters, digits"):
        load_settings({"QUEUE_NAME": raw})


@pytest.mark.parametrize("raw", ["jobs", "team-2.jobs", "class_A:jobs", "JOBS"])
def test_queue_names_of_letters_digits_and_punctuation_load(raw):
    assert load_settings({"QUEUE_NAME": raw}).queue_name == raw


@pytest.mark.parametrize("raw", ["jobs-plots", "team-2.jobs-plots", "-plots"])
def test_a_queue_name_that_is_another_queues_lane_stops_the_programs(raw):
    """QUEUE_NAME=jobs-plots is the plots lane of a deployment of `jobs` on the same Redis db: its
    workers ran that deployment's plot jobs as their own default lane (and the other way round)."""
    with pytest.raises(
        SettingsError, match=rf"QUEUE_NAME must not end in -plots, got '{raw}': hotqueue:{raw} is the plots lane"
    ):
        load_settings({"QUEUE_NAME": raw})


@pytest.mark.parametrize("raw", ["plots", "jobs-plot", "jobs-plots2", "jobs_plots", "jobs-PLOTS", "jobs-plots.v2"])
def test_names_near_a_lane_suffix_load(raw):
    assert load_settings({"QUEUE_NAME": raw}).queue_name == raw


def test_the_lane_suffix_refused_is_every_lane_the_key_layout_derives():
    import re

    from jobqueue import keys
    from jobqueue.lanes import DEFAULT, LANES
    from jobqueue.settings import QUEUE_NAME_LANE_SUFFIX

    for lane in LANES:
        derived = keys.lane_queue_name("jobs", lane)
        assert bool(re.search(QUEUE_NAME_LANE_SUFFIX, derived)) == (lane != DEFAULT), derived


def test_the_chart_refuses_the_queue_names_the_programs_refuse():
    import json

    import helm_python as helm
    from devstack.paths import REPO_ROOT
    from jobqueue.settings import QUEUE_NAME_LANE_SUFFIX, QUEUE_NAME_PATTERN

    chart = REPO_ROOT / "helm" / "atx-jobqueue"
    schema = json.loads((chart / "values.schema.json").read_text())
    rule = schema["properties"]["config"]["properties"]["queueName"]
    assert rule["pattern"] == QUEUE_NAME_PATTERN
    assert rule["not"] == {"pattern": QUEUE_NAME_LANE_SUFFIX}
    # and Helm's engine reads them as Python does
    with helm.Chart.load(str(chart)) as loaded:
        for name in ("jobs-plots", "", "a*b"):
            with pytest.raises(helm.HelmValuesError):
                loaded.validate_schema({"config": {"queueName": name}})
        for name in ("jobs", "jobs-plots2", "jobs-PLOTS"):
            loaded.validate_schema({"config": {"queueName": name}})


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
@pytest.mark.parametrize("queue_name", ["", "jobs-plots"])
def test_the_programs_stop_at_start_on_a_queue_name_they_refuse(program, queue_name):
    run = _start(program, timeout=30, QUEUE_NAME=queue_name)
    assert run.returncode == 2, run.stdout + run.stderr
    refusal = "must be letters" if not queue_name else "must not end in -plots"
    assert f"{program}: configuration error: QUEUE_NAME {refusal}" in run.stderr, run.stderr


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_the_programs_stop_at_start_on_an_empty_data_path(program):
    """DATA_PATH="" (a manifest's or .env's blank value) reached both programs: the API read it as the
    working directory (a folder: never ready) and the worker waited for a file named '' for ever,
    while make up and the jobqueue data commands took the default sample."""
    run = _start(program, timeout=20, DATA_PATH="")
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{program}: configuration error: DATA_PATH must name the data file" in run.stderr, run.stderr


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_the_programs_stop_at_start_on_a_blank_cache_dir(program, tmp_path):
    """DATA_CACHE_DIR=" " (a quoted blank) was a folder named ' ' made in the working directory."""
    run = _start(program, timeout=20, DATA_CACHE_DIR=" ")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        f"{program}: configuration error: DATA_CACHE_DIR ' ' begins or ends with white space, which is part of "
        "the folder's name here: write it without, or leave it empty (the cache then goes beside DATA_PATH)"
    ) in run.stderr, run.stderr


def test_a_cache_dir_with_white_space_around_it_says_so(tmp_path):
    """As DATA_PATH's error says (tests/analysis/test_loader.py); a folder so named that exists is used."""
    given = f" {tmp_path / 'cache'}"
    with pytest.raises(SettingsError) as err:
        load_settings({"DATA_CACHE_DIR": given})
    assert str(err.value) == (
        f"DATA_CACHE_DIR {given!r} begins or ends with white space, which is part of the folder's name here: "
        f"write it without, e.g. {str(tmp_path / 'cache')!r}"
    )
    (tmp_path / "spaced ").mkdir()
    assert load_settings({"DATA_CACHE_DIR": f"{tmp_path}/spaced "}).data_cache_dir == f"{tmp_path}/spaced "


@pytest.mark.parametrize("value", ["9999999999999999", "99999999999999999999999"])
def test_a_job_ttl_redis_cannot_expire_stops_the_programs(value):
    """JOB_TTL_SECONDS=9999999999999999 (a user's "never") started both programs, then Redis refused
    the worker's final write ("invalid expire time in 'set' command"): every job stayed in-progress."""
    with pytest.raises(SettingsError, match=r"JOB_TTL_SECONDS must be between 60 and 3153600000, got "):
        load_settings({"JOB_TTL_SECONDS": value})


def test_the_longest_job_ttl_is_one_redis_keeps(redis_url):
    s = load_settings({"REDIS_URL": redis_url, "JOB_TTL_SECONDS": "3153600000"})
    client = jobs_redis(s)
    assert client.set("ttl-probe", "1", ex=s.job_ttl_seconds)
    assert client.ttl("ttl-probe") > 3153500000
    client.delete("ttl-probe")


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
@pytest.mark.parametrize("name", ["RESULT_CACHE", "DIAGNOSTIC_OPERATIONS"])
def test_the_programs_stop_at_start_on_an_empty_boolean(program, name):
    """RESULT_CACHE= (an .env's or a manifest's blank) silently turned the result cache off, its
    default being on; an empty value is refused as every setting with a default refuses it (PORT=)."""
    run = _start(program, timeout=30, **{name: ""})
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{program}: configuration error: {name} must be a boolean" in run.stderr, run.stderr
    assert "(unset, it is " in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize(
    ("value", "meant"), [("true", True), ("True", True), ("YES", True), ("on", True), ("Off", False), ("0", False)]
)
def test_a_boolean_takes_the_spellings_users_write(value, meant):
    assert load_settings({"RESULT_CACHE": value}).result_cache is meant


def test_the_api_stops_at_start_on_quoted_allowed_hosts():
    """ALLOWED_HOSTS="localhost,127.0.0.1" from an env file for docker or compose (the quotes reach
    the program): the API started, /readyz said ready, and every request got 400 host_not_allowed."""
    run = _start("jobqueue-api", timeout=60, ALLOWED_HOSTS='"localhost,127.0.0.1"')
    assert run.returncode == 2, run.stdout + run.stderr
    assert "configuration error: ALLOWED_HOSTS" in run.stderr and "has quotes in it" in run.stderr, run.stderr
    assert "e.g. ALLOWED_HOSTS=localhost,127.0.0.1\n" in run.stderr, run.stderr


@pytest.mark.parametrize("name", ["PORT", "API_METRICS_PORT"])
def test_the_api_stops_at_once_on_a_port_another_program_holds(name):
    """A PORT or API_METRICS_PORT another program listens on (a worker's metrics port: 9102 is
    worker 2's by default): gunicorn retried for 5 s and exited 1 with "Can't connect to
    ('127.0.0.1', 9102)", naming no setting."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = _start("jobqueue-api", timeout=60, **{name: str(port)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"configuration error: {name} {port} is in use on 127.0.0.1 by another program" in run.stderr, run.stderr
    # gunicorn's retries log "Connection in use" once a second for 5 s before "Can't connect": neither
    # shows when the check stops it first (no clock: a loaded machine takes over 5 s just to start)
    for retrying in ("Connection in use", "Can't connect"):
        assert retrying not in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
