"""REDIS_URL parsing: the db each client gets is the service's, whatever the URL says; a URL that
would have moved one client elsewhere is refused at start, naming the variable. (The end-to-end
matrix with real processes is test_redis_urls.py; these are the quick checks of the same rules.)"""

from __future__ import annotations

import os
import subprocess

import pytest

from devstack.paths import BIN

from jobqueue.connections import connection_options, jobs_redis, queue_redis
from jobqueue.settings import SettingsError, load_settings


def _settings(url: str, **env: str):
    return load_settings({"REDIS_URL": url, **env})


@pytest.mark.parametrize("url", ["redis://h:6379/0", "redis://h:6379?db=0", "redis://h", "redis://h/"])
def test_the_clients_get_the_service_dbs_whatever_the_url_says(url):
    s = _settings(url)
    assert jobs_redis(s).connection_pool.connection_kwargs["db"] == 0
    assert queue_redis(s).connection_pool.connection_kwargs["db"] == 1


def test_a_url_db_equal_to_the_jobs_db_is_accepted_and_both_clients_follow_the_variables():
    s = _settings("redis://h:6379/5", REDIS_JOBS_DB="5", REDIS_QUEUE_DB="6")
    assert jobs_redis(s).connection_pool.connection_kwargs["db"] == 5
    assert queue_redis(s).connection_pool.connection_kwargs["db"] == 6


@pytest.mark.parametrize(
    "url,env,db",
    [
        ("redis://h:6379/5", {}, 5),
        ("redis://h:6379?db=2", {}, 2),
        ("redis://h:6379/1", {}, 1),  # the queue db is not the jobs db
        ("redis://h:6379/3", {"REDIS_JOBS_DB": "4"}, 3),
    ],
)
def test_a_url_db_that_is_not_the_jobs_db_is_refused_with_the_fix(url, env, db):
    with pytest.raises(SettingsError) as err:
        _settings(url, **env)
    msg = str(err.value)
    assert msg.startswith("REDIS_URL selects db") and f"db {db}" in msg
    assert f"REDIS_JOBS_DB={db}" in msg and "REDIS_QUEUE_DB=" in msg


@pytest.mark.parametrize(
    "url,word",
    [
        ("http://h:6379", "redis://"),
        ("redis://h:6379/jobs", "'jobs'"),
        ("redis://h:6379?sockettimeout=3", "sockettimeout"),
        ("redis://h:6379?db=x", "db"),
        ("redis://h:notaport", "REDIS_URL"),
    ],
)
def test_malformed_urls_name_the_variable(url, word):
    with pytest.raises(SettingsError) as err:
        _settings(url)
    assert "REDIS_URL" in str(err.value) and word in str(err.value)


@pytest.mark.parametrize(
    ("url", "example"),
    [
        ("127.0.0.1:7520", "e.g. REDIS_URL=redis://127.0.0.1:7520"),
        ("redis-db", "e.g. REDIS_URL=redis://redis-db:6379"),  # the tutorial's REDIS_IP, as it is
        ("/run/redis.sock", "e.g. REDIS_URL=unix:///run/redis.sock"),
        ("http://h:6379", "e.g. REDIS_URL=redis://h:6379"),
    ],
)
def test_a_url_without_the_redis_scheme_is_refused_with_one_that_works(url, example):
    """`REDIS_URL=$REDIS_IP` or `REDIS_URL=127.0.0.1:6379` (the tutorial gives a host and a port) was
    refused naming the schemes only; the CLI's --url already says what to write."""
    with pytest.raises(SettingsError) as err:
        _settings(url)
    assert str(err.value) == f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}: {example}"


@pytest.mark.parametrize(
    "option",
    ["socket_timeout=0", "socket_timeout=-1", "socket_timeout=nan", "socket_timeout=inf", "socket_connect_timeout=0"],
)
@pytest.mark.parametrize("program", ["jobqueue-api", "jobqueue-worker"])
def test_a_socket_timeout_that_is_no_time_stops_the_program_naming_the_variable(option, program):
    """Accepted before: with 0 every Redis call failed at once (every submit a 503 while /readyz
    said ready), with -1 every route answered 500. Now the program stops at start (status 2)."""
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:1/?{option}",
        "PORT": "1",
        "BIND_HOST": "127.0.0.1",
        "WORKER_METRICS_PORT": "0",
    }
    try:
        r = subprocess.run([str(BIN / program)], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{program} started with {option} instead of stopping")
    assert r.returncode == 2, r.stdout[-500:] + r.stderr[-500:]
    assert "REDIS_URL" in r.stderr and option.split("=")[0] in r.stderr


@pytest.mark.parametrize(
    ("url", "example"),
    [
        ("unix://tmp/redis.sock", "REDIS_URL=unix:///tmp/redis.sock"),
        ("unix://var/run/redis/redis.sock?db=0", "REDIS_URL=unix:///var/run/redis/redis.sock"),
        ("unix://redis.sock", "REDIS_URL=unix:///redis.sock"),
        ("unix://:s3cret@run/redis.sock", "REDIS_URL=unix:///run/redis.sock"),
        ("unix://localhost", "REDIS_URL=unix:///localhost"),
    ],
)
def test_a_unix_url_without_an_absolute_socket_path_is_refused_with_the_fix(url, example):
    """``unix://tmp/redis.sock`` (two slashes): redis-py took ``tmp`` for a host and dropped it, so
    both programs started and retried ``/redis.sock`` for ever; jobs waited with them."""
    with pytest.raises(SettingsError) as err:
        _settings(url)
    assert "REDIS_URL" in str(err.value) and "absolute socket path" in str(err.value)
    assert example in str(err.value) and "s3cret" not in str(err.value)


@pytest.mark.parametrize(
    "url", ["unix:///run/redis.sock", "unix://localhost/run/redis.sock", "unix://alice:pw@/run/redis.sock?db=0"]
)
def test_a_unix_url_with_an_absolute_socket_path_loads(url):
    assert connection_options(_settings(url), 1)["path"] == "/run/redis.sock"


@pytest.mark.parametrize(
    ("url", "example"),
    [
        ("redis://::1:6379", "REDIS_URL=redis://[::1]:6379"),
        ("redis://::1", "REDIS_URL=redis://[::1]"),
        ("redis://fe80::1:6380/0?socket_timeout=3", "REDIS_URL=redis://[fe80::1]:6380/0?socket_timeout=3"),
        ("redis://:s3cret@::1:6379", "REDIS_URL=redis://***@[::1]:6379"),
    ],
)
def test_an_ipv6_address_without_brackets_is_refused_with_them(url, example):
    """BIND_HOST takes ``::1`` bare, so ``REDIS_URL=redis://::1:6379`` is what one writes next: it
    was refused with redis-py's "Port could not be cast to integer value as ':1:6379'"."""
    with pytest.raises(SettingsError) as err:
        _settings(url)
    assert str(err.value) == f"REDIS_URL is not a valid Redis URL: an IPv6 address goes in brackets, e.g. {example}"


@pytest.mark.parametrize(
    ("query", "key", "kind"),
    [
        ("ssl_ca_certs=/nonexistent/ca.crt", "ssl_ca_certs", "file"),
        ("ssl_certfile=/nonexistent/client.crt", "ssl_certfile", "file"),
        ("ssl_keyfile=/nonexistent/client.key", "ssl_keyfile", "file"),
        ("ssl_ca_path=/nonexistent/certs", "ssl_ca_path", "folder"),
        ("ssl_ca_certs=/tmp", "ssl_ca_certs", "file"),  # a folder where a file goes
    ],
)
def test_a_tls_file_that_is_not_there_is_refused_naming_it(query, key, kind):
    """``rediss://host?ssl_ca_certs=/missing/ca.crt`` started both programs, which then retried
    "Error 2 connecting to host:port. No such file or directory" as if Redis were unreachable."""
    path = query.split("=", 1)[1]
    with pytest.raises(SettingsError) as err:
        _settings(f"rediss://h:6380?{query}")
    assert str(err.value).startswith(f"REDIS_URL's {key} names {path!r}, which is no {kind} here")


def test_redis_password_wins_over_the_url_and_the_user_is_kept():
    s = _settings("redis://alice:inurl@h:6379", REDIS_PASSWORD="fromenv")
    opts = connection_options(s, 0)
    assert (opts["username"], opts["password"]) == ("alice", "fromenv")
    assert connection_options(_settings("redis://:p%40ss@h"), 0)["password"] == "p@ss"


def test_tls_and_unix_urls_keep_their_connection_class_and_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    tls = connection_options(_settings(f"rediss://h:6380/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"), 1)
    assert tls["connection_class"].__name__ == "SSLConnection" and tls["ssl_ca_certs"] == str(ca)
    assert tls["db"] == 1
    sock = connection_options(_settings("unix:///run/redis.sock?db=0"), 1)
    assert sock["connection_class"].__name__ == "UnixDomainSocketConnection"
    assert (sock["path"], sock["db"]) == ("/run/redis.sock", 1)


@pytest.mark.parametrize(
    "url,shown",
    [
        ("redis://[::1]:7358", "redis://[::1]:7358"),
        ("redis://:pw@[fd00::5]/0", "redis://[fd00::5]:6379"),
        ("rediss://user:pw@redis.example:6380", "rediss://redis.example:6380"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_where_redis_is_as_logged_is_a_url_again_without_the_password(url, shown):
    """The API's and the worker's start line said `redis://::1:7358` for `redis://[::1]:7358`: the
    brackets were lost, so the logged address was no URL one could paste back."""
    from jobqueue.connections import describe

    assert describe(load_settings({"REDIS_URL": url})) == shown


@pytest.mark.parametrize(
    "url,shown",
    [
        ("redis://127.0.0.1:6379?password=p%40ss%3Aw%2Frd", "redis://127.0.0.1:6379?password=***"),
        ("redis://:p%40ss%3Aw%2Frd@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("rediss://student:pw@[::1]:6380/0?ssl_cert_reqs=none", "rediss://***@[::1]:6380/0?ssl_cert_reqs=none"),
        ("redis://h/0?db=0&password=pw&socket_timeout=3", "redis://h/0?db=0&password=***&socket_timeout=3"),
        ("rediss://h?ssl_password=key-pw&Password=pw", "rediss://h?ssl_password=***&Password=***"),
        ("redis://h?pass%77ord=pw", "redis://h?pass%77ord=***"),  # redis-py reads the key decoded
        ("redis://h?password=p@ss#rd", "redis://h?password=***"),
        ("redis://:p#ss@h", "redis://***@h"),
        ("unix://:pw@/run/redis.sock?db=0", "unix://***@/run/redis.sock?db=0"),
        ("unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=***"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("127.0.0.1:6379?password=pw", "127.0.0.1:6379?password=***"),  # no URL yet: refused, naming it
    ],
)
def test_a_url_as_make_up_prints_it_has_no_password_in_either_form(url, shown):
    """make up's banner masked only ``redis://:pw@host``; ``?password=pw`` (which redis-py reads as
    well) it printed in clear. Whatever redis-py would send as the password is gone from the text."""
    import redis.connection

    from jobqueue.settings import masked_redis_url

    assert masked_redis_url(url) == shown
    try:  # what redis-py would send as the password (a text it cannot read sends none)
        password = redis.connection.parse_url(url).get("password")
    except ValueError:
        password = None
    assert password is None or password not in masked_redis_url(url)


@pytest.mark.parametrize(
    "url,secret,words",
    [
        ("127.0.0.1:6379?password=s3cret", "s3cret", "got '127.0.0.1:6379?password=***'"),
        # an unescaped "?" or "#" ends the host part: redis-py read the password's start as the port
        ("redis://:s3c?ret@127.0.0.1:6379", "s3c", "its port is not a number"),
        ("redis://user:s3c#ret@127.0.0.1:6379", "s3c", "its port is not a number"),
    ],
)
def test_a_url_the_settings_refuse_is_named_without_its_password(url, secret, words):
    with pytest.raises(SettingsError) as refused:
        _settings(url)
    assert secret not in str(refused.value) and words in str(refused.value), refused.value
