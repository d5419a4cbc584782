"""BIND_HOST (and WORKER_METRICS_HOST) is an address this machine can listen on, or the programs stop
at start with exit 2 naming it. ``BIND_HOST=999.1.1.1`` or a name that does not resolve used to reach
gunicorn, which logged "connection to ('999.1.1.1', 5000) failed" for 5 s and exited 1 with "Can't
connect"; ``BIND_HOST=[::1]`` (the bracketed form ALLOWED_HOSTS and URLs use) failed the same way, and
``WORKER_METRICS_HOST=[::1]`` served no metrics."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from devstack.paths import BIN
from devstack.procs import free_port, spawn, wait_http
from jobqueue.settings import SettingsError, check_listen_host, load_settings
from tests.support.loopback import ipv6_loopback, needs_ipv6


@pytest.mark.parametrize(
    "raw,kept",
    [
        ("0.0.0.0", "0.0.0.0"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::", "::"),
        ("[::]", "::"),
        ("localhost", "localhost"),
        ("api.example.org", "api.example.org"),
        ("", "0.0.0.0"),  # as gunicorn took an empty host
    ],
)
def test_addresses_and_host_names_load(raw, kept):
    assert load_settings({"BIND_HOST": raw}).bind_host == kept


@pytest.mark.parametrize("raw", ["999.1.1.1", "1.2.3", "[127.0.0.1]", "::1]", "-api", "a..b"])
def test_what_is_no_address_or_name_stops_at_the_settings(raw):
    """An address with a port, a URL or a space around it is refused showing the address alone
    (tests/core/test_settings_forms.py)."""
    with pytest.raises(SettingsError, match=r"BIND_HOST must be an IP address .* or a host name"):
        load_settings({"BIND_HOST": raw})
    with pytest.raises(SettingsError, match=r"WORKER_METRICS_HOST must be an IP address"):
        load_settings({"WORKER_METRICS_HOST": raw})


def test_an_empty_worker_metrics_host_still_follows_bind_host():
    assert load_settings({"BIND_HOST": "[::1]", "WORKER_METRICS_HOST": ""}).worker_metrics_host == "::1"


@pytest.mark.parametrize(
    "host,words",
    [
        ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1: never assigned here
        ("no-such-host.invalid", "does not resolve to an IPv4 address"),  # .invalid never resolves (RFC 2606)
    ],
)
def test_an_address_or_name_of_another_machine_is_refused(host, words):
    with pytest.raises(SettingsError, match=words):
        check_listen_host("BIND_HOST", host)


def test_local_addresses_pass_the_check():
    for host in ("0.0.0.0", "127.0.0.1", "localhost") + (("::1", "::") if ipv6_loopback() else ()):
        check_listen_host("BIND_HOST", host)


def _api_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PORT": str(free_port()), "WEB_CONCURRENCY": "1", **extra}


@pytest.mark.parametrize(
    "host,words",
    [
        ("999.1.1.1", "BIND_HOST must be an IP address"),
        ("not-an-address", "BIND_HOST 'not-an-address' does not resolve"),
        ("192.0.2.1", "BIND_HOST '192.0.2.1' is not an address of this machine"),
    ],
)
def test_the_api_stops_at_start_with_exit_2_on_a_host_it_cannot_listen_on(redis_url, host, words):
    run = subprocess.run(
        [str(BIN / "jobqueue-api")],
        env=_api_env(REDIS_URL=redis_url, BIND_HOST=host),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"jobqueue-api: configuration error: {words}" in run.stderr, run.stderr
    assert "gunicorn" not in run.stdout + run.stderr  # stopped before gunicorn was started


@needs_ipv6
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_the_api_serves_on_ipv6_loopback_in_both_forms(redis_url, tmp_path, host):
    env = _api_env(REDIS_URL=redis_url, BIND_HOST=host, API_METRICS_PORT=str(free_port()))
    proc = spawn([str(BIN / "jobqueue-api")], env, tmp_path / "api.log")
    try:
        wait_http(f"http://[::1]:{env['PORT']}/healthz", proc, timeout=60)
        assert requests.get(f"http://[::1]:{env['API_METRICS_PORT']}/metrics", timeout=5).status_code == 200
    finally:
        proc.stop()


@needs_ipv6
def test_worker_metrics_serve_on_a_bracketed_ipv6_host(redis_url, tmp_path):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "WORKER_METRICS_HOST": "[::1]", "WORKER_METRICS_PORT": str(port)}
    proc = spawn([str(BIN / "jobqueue-worker")], env, tmp_path / "worker.log")
    try:
        wait_http(f"http://[::1]:{port}/metrics", proc, timeout=60)
    finally:
        proc.stop()


@pytest.mark.parametrize(
    "host, reached",
    [
        ("0.0.0.0", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("::", "[::1]"),
        ("::1", "[::1]"),
    ],
)
def test_make_up_reaches_a_listener_where_it_is_bound(host, reached):
    """make up's readiness wait, port checks and banner (scripts/up.sh) go where the API listens."""
    from jobqueue.settings import reach_address

    assert reach_address(host) == reached
