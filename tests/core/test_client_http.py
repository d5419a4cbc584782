"""The Python client's HTTP session against a real API (gunicorn + redis-server): it honours the
environment as requests does (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE,
.netrc) but reads it once per origin, not on every request, and sends a POST in one write.

Defects this guards (each reproduced before the fix): every request of a ``Client`` scanned the
whole environment for proxies and looked for a .netrc (hundreds of environment reads a request,
about 0.4 ms); a ``POST /submit`` went out in two writes (headers, then the body), so the API woke
twice for one request.
"""

from __future__ import annotations

import http.client
import os
import pickle
import socket
import threading
from collections.abc import Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from devstack.stack import running_stack
from jobqueue.client import ApiError, Client
from jobqueue.http import retrying_session

PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("client-http")) as stack:
        stack.start_api(web_concurrency=1)
        yield stack.url


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that records what it is asked: absolute-URI requests are relayed to their
    origin (http.client), CONNECT is refused with 502 after being recorded."""

    seen: list[tuple[str, str, dict[str, str]]] = []

    def _relay(self) -> None:
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        upstream = http.client.HTTPConnection(target.netloc, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request(self.command, target.path + (f"?{target.query}" if target.query else ""), body, headers)
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    def do_CONNECT(self) -> None:
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        self.send_error(502)

    do_GET = do_POST = _relay  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxy():
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_proxy_carries_every_request_and_no_proxy_bypasses_it(api, proxy, clean_env):
    clean_env.setenv("HTTP_PROXY", proxy)
    client = Client(api)
    job_id = client.submit("sleep", seconds=0)
    assert client.status(job_id)["job_id"] == job_id
    assert [(method, path) for method, path, _ in _Proxy.seen] == [
        ("POST", f"{api}/submit"),
        ("GET", f"{api}/status/{job_id}"),
    ]

    clean_env.setenv("NO_PROXY", "127.0.0.1")
    _Proxy.seen = []
    other = Client(api)
    assert other.status(other.submit("sleep", seconds=0))["status"]
    assert _Proxy.seen == []


def test_https_proxy_is_asked_to_connect_to_the_api(api, proxy, clean_env):
    clean_env.setenv("HTTPS_PROXY", proxy)
    port = urlsplit(api).port
    client = Client(f"https://127.0.0.1:{port}", session=retrying_session(attempts=0))
    with pytest.raises(requests.exceptions.ProxyError):
        client.operations()
    assert [(method, path) for method, path, _ in _Proxy.seen] == [("CONNECT", f"127.0.0.1:{port}")]


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_ca_bundle_from_the_environment_is_the_one_used(tmp_path, clean_env, variable):
    missing = tmp_path / "corporate-ca.pem"
    clean_env.setenv(variable, str(missing))
    client = Client("https://127.0.0.1:9", session=retrying_session(attempts=0))
    with pytest.raises(OSError, match=r"corporate-ca\.pem"):
        client.operations()


def test_netrc_credentials_reach_the_api_and_a_token_is_sent_without_one(api, proxy, tmp_path, clean_env):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    clean_env.setenv("HTTP_PROXY", proxy)  # the proxy shows the headers the API got
    client = Client(api)
    client.operations()
    client.operations()
    basic = requests.auth._basic_auth_str("alice", "s3cret")
    assert [headers.get("Authorization") for _, _, headers in _Proxy.seen] == [basic, basic]

    clean_env.delenv("NETRC")
    clean_env.setenv("HOME", str(tmp_path / "nohome"))
    _Proxy.seen = []
    Client(api, token="t0ken").operations()
    assert _Proxy.seen[0][2].get("Authorization") == "Bearer t0ken"


class _CountingEnviron(MutableMapping):
    """os.environ, counting every read."""

    def __init__(self, real) -> None:
        self.real, self.reads = real, 0

    def __getitem__(self, key):
        self.reads += 1
        return self.real[key]

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        return iter(self.real)

    def __len__(self) -> int:
        return len(self.real)

    def __setitem__(self, key, value) -> None:
        self.real[key] = value

    def __delitem__(self, key) -> None:
        del self.real[key]


def test_a_client_reads_the_environment_once_not_on_every_request(api, proxy, tmp_path, clean_env, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    clean_env.setenv("NO_PROXY", "localhost")
    client = Client(api)
    client.submit("sleep", seconds=0)  # the first request to the API reads it
    counting = _CountingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", counting)
    for _ in range(3):
        client.status(client.submit("sleep", seconds=0))
    monkeypatch.undo()
    assert counting.reads == 0, f"{counting.reads} environment reads in 6 requests"


def test_a_post_goes_out_in_one_write(api, clean_env, monkeypatch):
    client = Client(api)
    client.submit("sleep", seconds=0)  # connection open
    writes: list[int] = []
    real_sendall = socket.socket.sendall

    def sendall(sock, data, *args):
        writes.append(len(data))
        return real_sendall(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", sendall)
    client.submit("sleep", seconds=0)
    small, writes[:] = list(writes), []
    big = {"operation": "sleep", "params": {"seconds": 0, "pad": "x" * 100_000}}
    with pytest.raises(ApiError):  # answered (refused): it arrived whole
        client._request("POST", "/submit", json=big)
    monkeypatch.undo()
    assert len(small) == 1, f"one POST /submit took {len(small)} writes of {small} bytes"
    assert len(writes) >= 2 and sum(writes) > 100_000, writes  # a large body still goes apart


def test_a_pickled_session_still_works_and_reads_the_environment_where_it_lands(api, proxy, clean_env):
    session = retrying_session()
    Client(api, session=session).operations()  # caches this process's (empty) proxy settings
    clean_env.setenv("HTTP_PROXY", proxy)
    copy = pickle.loads(pickle.dumps(session))
    assert Client(api, session=copy).operations()
    assert [method for method, _, _ in _Proxy.seen] == ["GET"]


@pytest.mark.parametrize("url", ["http://[::1:5000", "http://[::1]:port"])
def test_a_malformed_url_is_the_error_requests_gives_not_a_traceback(url, clean_env):
    """A mistyped --url/JOBQUEUE_URL (an unclosed IPv6 bracket, a port that is no number): the
    session reads the environment for the URL's origin before requests parses the URL, and once
    raised urllib's bare ValueError from there, which the CLI showed as a traceback (exit 1)."""
    with pytest.raises(requests.RequestException) as plain:
        requests.Session().get(url + "/status/x", timeout=5)
    with pytest.raises(requests.RequestException) as ours:
        retrying_session().get(url + "/status/x", timeout=5)
    assert type(ours.value) is type(plain.value)


@pytest.mark.parametrize("source", ["url", "JOBQUEUE_URL"])
def test_a_url_without_its_scheme_is_refused_at_construction_saying_what_to_write(monkeypatch, source):
    """``Client("127.0.0.1:7300")`` was made, and its first request failed with requests' "No
    connection adapters were found"; ``jobqueue --url 127.0.0.1:7300`` already refuses it clearly."""
    monkeypatch.delenv("JOBQUEUE_URL", raising=False)
    if source == "JOBQUEUE_URL":
        monkeypatch.setenv("JOBQUEUE_URL", "127.0.0.1:7300")
    with pytest.raises(ValueError, match=f"^{source} '127.0.0.1:7300' needs http:// .* http://127.0.0.1:7300$"):
        Client("127.0.0.1:7300" if source == "url" else None)


@pytest.mark.parametrize("given", ["7300", ":7300", "http://:7300"])
def test_a_port_alone_is_refused_with_a_url_that_works_as_its_example(given):
    """``--url 7300`` or ``--url :7300`` (the port, as `make up`'s PORT is given) were refused with
    "e.g. http://7300" and "e.g. http://:7300", neither of which works either."""
    from jobqueue.cliargs import UsageError, check_url

    with pytest.raises(UsageError) as err:
        check_url(given, "--url")
    assert str(err.value) == f"--url {given!r} needs http:// or https:// and a host, e.g. http://127.0.0.1:7300"


def test_a_date_parameter_is_sent_as_the_apis_iso_day_and_a_datetime_is_refused_by_name(api):
    """``datetime.date`` was a TypeError ("not JSON serializable") from inside the request."""
    import datetime

    client = Client(api)
    job = client.status(client.submit("daily_counts", start=datetime.date(2024, 1, 1), end="2024-01-31"))
    assert job["params"]["start"] == "2024-01-01", job
    job = client.submit_and_wait("daily_counts", {"end": datetime.date(2024, 1, 31)}, wait=0)
    assert client.status(job["job_id"])["params"]["end"] == "2024-01-31"
    with pytest.raises(ValueError, match=r"parameter 'start' is a datetime .*start=<the datetime>\.date\(\)"):
        client.submit("daily_counts", start=datetime.datetime(2024, 1, 1, 12, 0))


def test_a_decimal_parameter_is_sent_as_its_number_and_one_no_float_holds_is_refused_by_name(api):
    """``decimal.Decimal`` was requests' TypeError ("not JSON serializable"); now a whole or
    float-exact one is sent as that number, and any other value JSON cannot carry is refused by name."""
    from decimal import Decimal

    client = Client(api)
    job = client.status(client.submit("top_locations", n=Decimal("3")))
    assert job["params"]["n"] == 3 and isinstance(job["params"]["n"], int), job
    job = client.status(client.submit("sleep", seconds=Decimal("0.1")))
    assert job["params"]["seconds"] == 0.1, job
    with pytest.raises(ValueError, match=r"parameter 'seconds' is Decimal\('0.10000000000000000001'\), which no JSON"):
        client.submit("sleep", seconds=Decimal("0.10000000000000000001"))
    with pytest.raises(ValueError, match=r"parameter 'seconds' is Decimal\('NaN'\)"):
        client.submit("sleep", {"seconds": Decimal("NaN")})
    # a float JSON cannot carry either: it was requests' InvalidJSONError (not a ValueError), naming nothing
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=rf"parameter 'seconds' is {value!r}; the API's numbers are finite"):
            client.submit("sleep", seconds=value)
    with pytest.raises(ValueError, match=r"parameter 'road' is a builtins.list, which JSON cannot carry"):
        client.submit("incidents_by_road", road=["183", float("nan")])
    with pytest.raises(ValueError, match=r"parameter 'road' is a builtins.set, which JSON cannot carry"):
        client.submit("incidents_by_road", road={"183"})
