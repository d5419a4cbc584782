"""Settings written as users write them elsewhere: a YAML file, a compose env file, a habit from
another program (units, quotes, separators). Each is refused saying what the mistake is and the
bare value to write, by both programs alike."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from jobqueue.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "name,raw,said",
    [
        (
            "JOB_TTL_SECONDS",
            "1h",
            "JOB_TTL_SECONDS takes seconds as a plain number, without the unit, got '1h': write JOB_TTL_SECONDS=3600",
        ),
        ("JOB_TIMEOUT_SECONDS", "5m", "got '5m': write JOB_TIMEOUT_SECONDS=300"),
        ("REDIS_TIMEOUT_SECONDS", "0.5 s", "got '0.5 s': write REDIS_TIMEOUT_SECONDS=0.5"),
        ("MAX_WAIT_SECONDS", "30sec", "got '30sec': write MAX_WAIT_SECONDS=30"),
        (
            "MAX_BODY_BYTES",
            "1MB",
            "MAX_BODY_BYTES takes bytes as a plain number, without the unit, got '1MB': write MAX_BODY_BYTES=1048576",
        ),
        ("DATA_MAX_BYTES", "2Gi", "write DATA_MAX_BYTES=2147483648"),
        (
            "JOB_TIMEOUT_SECONDS",
            '"5"',
            "JOB_TIMEOUT_SECONDS has quotes around it, part of the value here (no shell removed them), got '\"5\"': write JOB_TIMEOUT_SECONDS=5",
        ),
        ("PORT", "'8080'", "write PORT=8080"),
        (
            "JOB_TTL_SECONDS",
            '"7d"',
            "has quotes around it, part of the value here (no shell removed them) and takes seconds as a plain number, without the unit, got '\"7d\"': write JOB_TTL_SECONDS=604800",
        ),
        (
            "MAX_WAITERS",
            "1,000",
            "MAX_WAITERS takes a plain number, without thousands separators, got '1,000': write MAX_WAITERS=1000",
        ),
        ("MAX_WAITERS", "1e3", "MAX_WAITERS takes a whole number, got '1e3': write MAX_WAITERS=1000"),
        ("WEB_CONCURRENCY", "4.0", "write WEB_CONCURRENCY=4"),
        (
            "SUBMIT_RATE_LIMIT",
            "0x10",
            "SUBMIT_RATE_LIMIT takes a decimal number, got '0x10': write SUBMIT_RATE_LIMIT=16",
        ),
        # the bare value is out of bounds: say both, so the fix is not refused in turn
        ("JOB_TTL_SECONDS", "30s", "got '30s' (JOB_TTL_SECONDS=30), and it must be between 60 and 3153600000"),
        ("CLIENT_TIMEOUT_SECONDS", "1.5s", "got '1.5s' (1.5), and it must be a whole number"),
        ("PORT", "5.5", "PORT must be a whole number, got '5.5'"),
        ("PORT", "", "PORT is empty: give an integer or leave it unset (it is 5000)"),
        ("JOB_LEASE_SECONDS", " ", "JOB_LEASE_SECONDS is empty: give a number or leave it unset (it is 30)"),
        # nothing to suggest: said as before
        ("PORT", "http", "PORT must be an integer, got 'http'"),
        ("PORT", "80s", "PORT must be an integer, got '80s'"),  # a port has no unit
        ("JOB_TIMEOUT_SECONDS", "5 parsecs", "JOB_TIMEOUT_SECONDS must be a number, got '5 parsecs'"),
    ],
)
def test_a_number_written_as_elsewhere_is_refused_with_the_bare_value(name, raw, said):
    """JOB_TTL_SECONDS=30s, MAX_BODY_BYTES=1MB or a compose env file's JOB_TIMEOUT_SECONDS="5" used
    to get only "must be an integer, got '30s'", which does not say what is wrong with 30s."""
    with pytest.raises(SettingsError) as err:
        load_settings({name: raw})
    assert said in str(err.value)


@pytest.mark.parametrize(
    "name,raw,value", [("PORT", "05", 5), ("PORT", " 8080 ", 8080), ("JOB_TIMEOUT_SECONDS", "1e3", 1000.0)]
)
def test_plain_numbers_still_load(name, raw, value):
    assert getattr(load_settings({name: raw}), name.lower()) == value


def _start(program: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``program`` as its container runs it (its command, settings from the environment), expected to
    stop at start; ``jobqueue-worker`` with ``--burst`` so that a failure to stop cannot hang."""
    from devstack.paths import BIN
    from devstack.procs import free_port

    env = {**os.environ, "PORT": str(free_port()), "BIND_HOST": "127.0.0.1", "WORKER_METRICS_PORT": "0", **settings}
    command = [str(BIN / program)] + (["--burst"] if program == "jobqueue-worker" else [])
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_stop_at_start_naming_the_unit(program):
    run = _start(program, JOB_TTL_SECONDS="1h")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        f"{program}: configuration error: JOB_TTL_SECONDS takes seconds as a plain number, without the unit, "
        "got '1h': write JOB_TTL_SECONDS=3600"
    ) in run.stderr, run.stderr


@pytest.mark.parametrize(
    "name,raw,where",
    [
        ("API_TOKEN", '"s3cret"', "API_TOKEN begins"),
        ("API_TOKEN", "'s3cret'\n", "API_TOKEN begins"),  # a Secret file's newline after the quotes
        ("API_TOKENS", '"alice:s3cret,bob:b0b"', "API_TOKENS (the whole value) begins"),
        ("API_TOKENS", 'alice:a1ice,bob:"s3cret"', "API_TOKENS (entry 2 of 2) begins"),
    ],
)
def test_a_token_with_quotes_around_it_stops_the_programs_without_showing_it(name, raw, where):
    """API_TOKEN="s3cret" in a compose env file reached the API with its quotes: it started, and every
    client sending s3cret got 401 "the token sent is not one this API knows"."""
    with pytest.raises(SettingsError) as err:
        load_settings({name: raw})
    assert str(err.value).startswith(f"{where} or ends with a quote, part of the value here")
    assert "without quotes (the value is a secret: not shown)" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_quote_inside_a_token_is_part_of_it():
    assert load_settings({"API_TOKEN": 'ab"c'}).api_token == 'ab"c'


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_stop_at_start_on_a_quoted_token(program):
    run = _start(program, API_TOKEN='"s3cret"')
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{program}: configuration error: API_TOKEN begins or ends with a quote" in run.stderr, run.stderr
    assert "s3cret" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "name,raw,bare",
    [
        ("LOG_LEVEL", '"info"', "info"),
        ("RESULT_CACHE", "'true'", "true"),
        ("DATA_CACHE_MODE", '"off"', "off"),
        ("QUEUE_NAME", '"jobs"', "jobs"),
        ("BIND_HOST", "'127.0.0.1'", "127.0.0.1"),
        ("FORWARDED_ALLOW_IPS", '"*"', "*"),
    ],
)
def test_a_word_with_quotes_around_it_is_refused_saying_so(name, raw, bare):
    """LOG_LEVEL="info" from an env file for docker or compose was told "must be one of DEBUG, INFO,
    ...", which it seemed to be."""
    with pytest.raises(SettingsError) as err:
        load_settings({name: raw})
    assert str(err.value) == (
        f"{name} has quotes around it, part of the value here (no shell removed them), got {raw!r}: write {name}={bare}"
    )


def test_a_quoted_value_wrong_without_its_quotes_too_is_refused_for_that():
    with pytest.raises(SettingsError, match=r"^LOG_LEVEL must be one of DEBUG"):
        load_settings({"LOG_LEVEL": '"loud"'})


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_stop_at_start_on_a_quoted_word(program):
    run = _start(program, LOG_LEVEL='"info"')
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{program}: configuration error: LOG_LEVEL has quotes around it" in run.stderr, run.stderr
    assert "write LOG_LEVEL=info" in run.stderr, run.stderr


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_stop_at_start_on_a_quoted_data_path(program):
    """DATA_PATH="data/traffic_incidents_sample.csv" in an env file for docker or compose: the API
    never became ready and the worker logged "data file not found; waiting for it" for ever."""
    from devstack.paths import REPO_ROOT

    sample = REPO_ROOT / "data" / "traffic_incidents_sample.csv"
    run = _start(program, DATA_PATH=f'"{sample}"')
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr
    assert f"{program}: configuration error: DATA_PATH has quotes around it" in run.stderr, run.stderr
    assert f"write DATA_PATH={sample}\n" in run.stderr, run.stderr


def test_a_cache_dir_with_quotes_around_it_is_refused_unless_it_exists(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=f"write DATA_CACHE_DIR={tmp_path}$"):
        load_settings({"DATA_CACHE_DIR": f"'{tmp_path}'"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / '"odd"').mkdir()  # a folder so named is used, as one with a space around its name
    assert load_settings({"DATA_CACHE_DIR": '"odd"'}).data_cache_dir == '"odd"'


def test_a_setting_named_in_another_case_is_found():
    from jobqueue.settings import misnamed

    env = {"log_level": "debug", "Job_Ttl_Seconds": "60", "LOG_LEVEL": "INFO", "PATH": "/bin", "port_x": "1"}
    assert misnamed(env) == {"log_level": "LOG_LEVEL", "Job_Ttl_Seconds": "JOB_TTL_SECONDS"}


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_warn_at_start_of_a_setting_in_lower_case(program, redis_url):
    """`queue_name: other` in a compose file or a ConfigMap was ignored without a word: the programs
    ran on the queue `jobs`."""
    from devstack.paths import BIN
    from devstack.procs import free_port

    env = {**os.environ, "REDIS_URL": redis_url, "PORT": str(free_port()), "BIND_HOST": "127.0.0.1"}
    env.update(WORKER_METRICS_PORT="0", queue_name="other")
    command = [str(BIN / program)] + (["--burst"] if program == "jobqueue-worker" else [])
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        deadline = threading.Timer(60, proc.terminate)  # the API runs until stopped: no warning, no hang
        deadline.start()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                if "is not read" in line:
                    break
        finally:
            deadline.cancel()
            proc.terminate()
            proc.wait(timeout=60)
    assert "queue_name is not read: setting names are upper case, QUEUE_NAME (unset: its default applies)" in line


def test_the_readme_gives_each_number_settings_range():
    """The configuration table gave no range: WEB_CONCURRENCY=100 or CLIENT_TIMEOUT_SECONDS=2.5 were
    refused at start with limits the reader could not have known."""
    import re

    from devstack.paths import REPO_ROOT
    from jobqueue.settings import SPEC, Number

    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n### ", 1)[0]
    rows = {m.group(1): line for line in table.splitlines() if (m := re.match(r"\| `([A-Z_]+)` \|", line))}
    for name, (_default, parse, _doc) in SPEC.items():
        if isinstance(parse, Number):
            assert f"Range: {parse.described()}. |" in rows[name], (name, rows[name][-120:])


@pytest.mark.parametrize(
    "name,raw,said",
    [
        ("BIND_HOST", "0.0.0.0:5000", "write BIND_HOST=0.0.0.0 (the port goes in PORT: PORT=5000)"),
        ("BIND_HOST", "http://localhost:8080/", "write BIND_HOST=localhost (the port goes in PORT: PORT=8080)"),
        ("BIND_HOST", "[::1]:5000", "write BIND_HOST=[::1] (the port goes in PORT: PORT=5000)"),
        ("BIND_HOST", " 127.0.0.1", "got ' 127.0.0.1': write BIND_HOST=127.0.0.1"),
        ("BIND_HOST", "*", "got '*': write BIND_HOST=0.0.0.0 for every interface"),
        ("WORKER_METRICS_HOST", "0.0.0.0:9100", "(the port goes in WORKER_METRICS_PORT: WORKER_METRICS_PORT=9100)"),
    ],
)
def test_an_address_written_as_elsewhere_is_refused_with_the_address_alone(name, raw, said):
    """BIND_HOST=0.0.0.0:5000 (as gunicorn's --bind takes it) was told only "must be an IP address
    ... or a host name", which 0.0.0.0 seemed to be."""
    with pytest.raises(SettingsError) as err:
        load_settings({name: raw})
    assert said in str(err.value) and "takes an address" in str(err.value)


@pytest.mark.parametrize("raw", ["999.1.1.1", "999.1.1.1:80", "host:abc", "http://x/y"])
def test_an_address_that_is_none_is_refused_as_before(raw):
    with pytest.raises(SettingsError, match=r"^BIND_HOST must be an IP address"):
        load_settings({"BIND_HOST": raw})


@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_both_programs_stop_at_start_on_an_address_with_its_port(program):
    run = _start(program, BIND_HOST="0.0.0.0:5000")
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        f"{program}: configuration error: BIND_HOST takes an address alone, got '0.0.0.0:5000': "
        "write BIND_HOST=0.0.0.0 (the port goes in PORT: PORT=5000)"
    ) in run.stderr, run.stderr


def test_a_redis_password_with_quotes_around_it_is_said_to_have_them(tmp_path):
    """REDIS_PASSWORD="pw" in an env file for docker or compose reaches the programs with its quotes
    (not refused at start: a Redis given the same file has them too). Redis then refuses it, and the
    logs said only "invalid username-password pair"; the password itself is never shown."""
    from devstack.redis_server import RedisServer, find_redis_server
    from jobqueue.connections import jobs_redis
    from jobqueue.wire import SetupRefused

    if find_redis_server() is None:
        pytest.skip("needs redis-server (make setup)")
    server = RedisServer(tmp_path / "redis", password="s3cret").start()
    try:
        for given, hinted in (('"s3cret"', True), ("wrong", False)):
            with pytest.raises(SetupRefused) as refused:
                jobs_redis(load_settings({"REDIS_URL": server.url, "REDIS_PASSWORD": given})).ping()
            said = str(refused.value)
            assert said.startswith("Redis refused this service's credentials: ") and "s3cret" not in said
            assert ("the password sent begins and ends with a quote" in said) is hinted, said
            assert ("write REDIS_PASSWORD without, unless they are part of the password" in said) is hinted
    finally:
        server.stop()
