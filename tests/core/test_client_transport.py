"""The Python client's lean transport (``jobqueue.transport``): a ``Client`` made without
``session=`` sends on kept-alive sockets of its own unless requests would do more than that; the
answers, errors, retries and redirects are the same on both paths; a connection the server closed
is replaced without sending a request twice when the server may have acted on it.

Real servers only: the API under gunicorn with a real redis-server, a scripted HTTP/1.1 server on
a real socket (to close a keep-alive connection at the exact moment a request arrives, which no
timing can do reliably), a TLS server with a certificate made by ``openssl``.
"""

from __future__ import annotations

import gc
import gzip
import json
import pickle
import re
import socket
import ssl
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from devstack.stack import running_stack
from jobqueue import transport
from jobqueue.client import ApiError, Client
from jobqueue.http import BearerToken, retrying_session

ENV_VARS = (
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
    "JOBQUEUE_TOKEN",
)
PATHS = ["lean", "requests"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("client-transport")) as stack:
        stack.start_api(web_concurrency=1, CLIENT_TIMEOUT_SECONDS="1")  # idle keep-alive closed after 1 s
        yield stack.url


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's
    return monkeypatch


@pytest.fixture
def sends(monkeypatch) -> list[str]:
    """URLs sent through requests' machinery (``requests.Session.send``), in order."""
    seen: list[str] = []
    real = requests.Session.send

    def send(session, request, **kwargs):
        seen.append(request.url)
        return real(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    return seen


def client_on(path: str, url: str, **kwargs) -> Client:
    """A client on the lean path (no session given) or on requests' (the same session, given)."""
    return Client(url, **kwargs) if path == "lean" else Client(url, session=retrying_session(), **kwargs)


# --- which path -----------------------------------------------------------------------------------


def test_a_client_without_a_session_sends_every_call_without_requests(api, clean_env, sends):
    client = Client(api)
    job_id = client.submit("sleep", seconds=0)
    assert client.status(job_id)["job_id"] == job_id
    assert client.status(job_id, wait=0.2)["status"] == "submitted"  # no worker here: still queued
    assert any(op["name"] == "sleep" for op in client.operations())
    assert job_id in [job["job_id"] for job in client.jobs()]
    assert "depth" in json.dumps(client.queue())
    assert client.cancel(job_id)["status"] == "cancelled"
    with pytest.raises(ApiError) as refused:
        client.submit("no_such_operation")
    assert refused.value.status == 400 and refused.value.code == "unknown_operation"
    assert sends == []


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_a_proxy_for_the_api_puts_every_request_on_requests(api, clean_env, sends, variable):
    no_proxy = "NO_PROXY" if variable.isupper() else "no_proxy"
    with Scripted([]) as proxy:  # answers what it is asked, as a proxy would
        clean_env.setenv(variable, proxy.url)
        clean_env.setenv(no_proxy, "127.0.0.1")
        client = Client(api)
        client.status(client.submit("sleep", seconds=0))
        assert sends == [] and proxy.seen == []  # bypassed by NO_PROXY: the lean path

        clean_env.delenv(no_proxy)
        Client(api).operations()
    assert sends == [f"{api}/operations"]
    assert [s["target"] for s in proxy.seen] == [f"{api}/operations"]  # absolute URI: a proxy request


def test_trust_env_false_on_the_clients_session_drops_the_proxy_as_requests_does(api, clean_env, sends):
    with Scripted([]) as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        client = Client(api)
        client.operations()
        client.session.trust_env = False
        client.operations()
    assert sends == [f"{api}/operations"] and len(proxy.seen) == 1


def test_an_https_proxy_leaves_plain_http_on_the_lean_path(api, clean_env, sends):
    clean_env.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # requests would not use it for http://
    Client(api).operations()
    assert sends == []


def test_a_given_session_carries_every_request(api, clean_env, sends):
    client = Client(api, session=retrying_session())
    job_id = client.submit("sleep", seconds=0)
    client.status(job_id)
    assert sends == [f"{api}/submit", f"{api}/status/{job_id}"]


@pytest.mark.parametrize("change", ["auth", "cookie", "hook", "adapter", "params", "replaced"])
def test_changing_the_clients_own_session_puts_it_on_requests(api, clean_env, sends, change):
    client = Client(api)
    client.operations()
    assert sends == []
    if change == "auth":
        client.session.auth = ("alice", "s3cret")
    elif change == "cookie":
        client.session.cookies.set("flavour", "oat")
    elif change == "hook":
        client.session.hooks["response"].append(lambda response, **kw: response)
    elif change == "adapter":
        client.session.mount(api, requests.adapters.HTTPAdapter())
    elif change == "params":
        client.session.params["trace"] = "1"
    else:
        client.session = retrying_session()
    client.operations()
    assert sends == [f"{api}/operations" + ("?trace=1" if change == "params" else "")]


def test_one_client_shared_by_threads_gives_each_its_own_answers(api, clean_env, sends):
    client = Client(api)

    def submit_and_read(i: int) -> tuple[str, str]:
        job_id = client.submit("sleep", seconds=0)
        return job_id, client.status(job_id)["job_id"]

    with ThreadPoolExecutor(6) as pool:
        pairs = list(pool.map(submit_and_read, range(120)))
    assert all(sent == read for sent, read in pairs) and len({sent for sent, _ in pairs}) == 120
    assert sends == [] and sum(len(o.idle) for o in client._lean.origins.values() if o) <= 6


def test_a_dropped_client_closes_its_connections(api, clean_env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = Client(api)
        client.operations()
        del client
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_pickled_client_opens_its_own_connections_and_stays_lean(api, clean_env, sends):
    client = Client(api, token="t0ken")
    client.operations()  # a kept-alive socket in it
    copy = pickle.loads(pickle.dumps(client))
    assert copy.status(copy.submit("sleep", seconds=0))["status"]
    assert copy.session.auth == BearerToken("t0ken") and sends == []


# --- the same behaviour on both paths ---------------------------------------------------------------


def test_the_lean_path_sends_the_headers_requests_sends(clean_env):
    with Scripted([]) as server:
        for path in PATHS:
            client = client_on(path, server.url, token="t0ken")
            client.status("j1", wait=1)
            client.submit("sleep", seconds=0)
            client.cancel("j1")
        port = server.url.rsplit(":", 1)[1]
        for path in PATHS:  # spelled differently: the same Host header
            client_on(path, f"http://LOCALHOST:{port}/").operations()
    lean, plain = server.seen[:3] + server.seen[6:7], server.seen[3:6] + server.seen[7:]
    assert [(s["method"], s["target"], s["headers"], s["body"]) for s in lean] == [
        (s["method"], s["target"], s["headers"], s["body"]) for s in plain
    ]


@pytest.mark.parametrize("path", PATHS)
def test_a_url_with_a_path_prefix_keeps_it(clean_env, path):
    with Scripted([]) as server:
        client_on(path, server.url + "/jobqueue/").status("j1", wait=0.5)
    assert [s["target"] for s in server.seen] == ["/jobqueue/status/j1?wait=0.5"]


def test_api_errors_are_the_same_on_both_paths(api, clean_env):
    job_id = Client(api).submit("sleep", seconds=0)
    unknown = job_id[:-1] + ("0" if job_id[-1] != "0" else "1")
    calls = [
        lambda c: c.status("not a job id"),
        lambda c: c.status(unknown),
        lambda c: c.cancel(unknown),
        lambda c: c.submit("sleep", seconds="x"),
        lambda c: c.submit("no_such_operation"),
        lambda c: c._request("POST", "/submit", json=[1]),
        lambda c: c.jobs(status="nonsense"),
    ]
    for call in calls:
        errors = []
        for path in PATHS:
            with pytest.raises(ApiError) as failed:
                call(client_on(path, api))
            errors.append((failed.value.status, failed.value.code, failed.value.message, failed.value.body))
        assert errors[0] == errors[1] and 400 <= errors[0][0] < 500


@pytest.mark.parametrize("path", PATHS)
def test_the_apis_keep_alive_timeout_closing_an_idle_connection_costs_nothing(api, clean_env, path):
    client = client_on(path, api)
    job_id = client.submit("sleep", seconds=0)
    for _ in range(2):
        time.sleep(1.3)  # past CLIENT_TIMEOUT_SECONDS: the API closed it
        assert client.status(job_id)["job_id"] == job_id
        time.sleep(1.3)
        assert client.submit("sleep", seconds=0)


@pytest.mark.parametrize("path", PATHS)
def test_a_long_poll_gets_its_wait_on_top_of_the_timeout(api, clean_env, path):
    client = client_on(path, api, timeout=1.0)
    job_id = client.submit("sleep", seconds=0)  # no worker: it stays queued
    started = time.monotonic()
    assert client.status(job_id, wait=1.5)["status"] == "submitted"
    assert time.monotonic() - started >= 1.4  # the server held it; no read timeout


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("url", ["http://[::1:5000", "http://[::1]:port", "http://"])
def test_a_malformed_url_is_the_same_error_on_both_paths(clean_env, path, url):
    """Refused when the client is made, the same way on the lean path and with a session, with a
    message that says how to write it (``requests`` would fail only at the first request)."""
    with pytest.raises(requests.RequestException):
        requests.Session().get(url + "/operations", timeout=5)
    with pytest.raises(ValueError, match=r"http://HOST:PORT$") as ours:
        client_on(path, url)
    with pytest.raises(ValueError) as lean:
        client_on("lean", url)
    assert str(ours.value) == str(lean.value)


@pytest.fixture(scope="module")
def token_api(tmp_path_factory):
    """An API that needs a token (``API_TOKENS``), as a class cluster deploys it."""
    with running_stack(tmp_path_factory.mktemp("client-token")) as stack:
        stack.start_api(web_concurrency=1, API_TOKENS="alice:tok-alice")
        yield stack.url


def _netrc(clean_env, tmp_path, host: str = "127.0.0.1"):
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host} login alice password s3cret\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("given", ["argument", "JOBQUEUE_TOKEN"])
def test_an_explicit_token_wins_over_netrc_credentials_for_the_api(token_api, clean_env, tmp_path, sends, path, given):
    """A user with a ~/.netrc entry for the API's host (for another tool, or stale) and a token:
    requests replaced the session's ``Authorization: Bearer`` with Basic auth from .netrc and the
    lean path mimicked it, so every call got 401."""
    _netrc(clean_env, tmp_path)
    if given == "JOBQUEUE_TOKEN":
        clean_env.setenv("JOBQUEUE_TOKEN", "tok-alice")
    client = client_on(path, token_api, **({"token": "tok-alice"} if given == "argument" else {}))
    job_id = client.submit("sleep", seconds=0)
    assert client.status(job_id)["job_id"] == job_id
    assert (sends == []) is (path == "lean")  # the lean path stays in use for token users

    clean_env.delenv("JOBQUEUE_TOKEN", raising=False)
    with pytest.raises(ApiError) as refused:  # no token: .netrc's Basic auth, as requests sends it
        client_on(path, token_api).submit("sleep", seconds=0)
    assert refused.value.status == 401


@pytest.mark.parametrize("path", PATHS)
def test_netrc_credentials_are_sent_as_requests_sends_them_when_there_is_no_token(clean_env, tmp_path, path):
    _netrc(clean_env, tmp_path)
    with Scripted([]) as server:
        client_on(path, server.url).operations()
        Client(server.url, session=requests.Session()).operations()  # plain requests
        client_on(path, server.url, token="t0ken").operations()
        Client(server.url, session=requests.Session(), token="t0ken").operations()
    ours, plain, ours_token, plain_token = (seen["headers"].get("authorization") for seen in server.seen)
    assert ours == plain == requests.auth._basic_auth_str("alice", "s3cret")
    assert ours_token == plain_token == "Bearer t0ken"


@pytest.mark.parametrize("path", PATHS)
def test_a_redirect_on_the_same_origin_keeps_the_token_over_netrc(clean_env, tmp_path, path):
    _netrc(clean_env, tmp_path)
    with Scripted([]) as server:
        server.script = [(307, {"Location": f"{server.url}/operations"}, b"")]
        client_on(path, server.url, token="t0ken").operations()
    assert [seen["headers"].get("authorization") for seen in server.seen] == ["Bearer t0ken"] * 2


@pytest.mark.parametrize("path", PATHS)
def test_a_redirect_to_another_origin_takes_that_origins_netrc_credentials_not_the_token(clean_env, tmp_path, path):
    _netrc(clean_env, tmp_path)  # for 127.0.0.1: both servers' host
    with Scripted([]) as target, Scripted([]) as first:
        first.script = [(307, {"Location": f"{target.url}/operations"}, b"")]
        client_on(path, first.url, token="t0ken").operations()
    assert first.seen[0]["headers"].get("authorization") == "Bearer t0ken"
    assert target.seen[0]["headers"].get("authorization") == requests.auth._basic_auth_str("alice", "s3cret")


# --- a scripted server on a real socket --------------------------------------------------------------


class Scripted:
    """An HTTP/1.1 keep-alive server whose n-th request gets the n-th scripted action:
    ``"ok"`` (a JSON 200, connection kept), ``"drop"`` (read the request, close without answering:
    a keep-alive timeout firing as it arrives, or a crash after acting on it), ``"hang"`` (never
    answer), or ``(status, headers, body)``. Records each request with its connection number."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.seen: list[dict] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.closing = threading.Event()

    def __enter__(self) -> Scripted:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, value = header.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                self.seen.append(
                    {
                        "method": method,
                        "target": target,
                        "headers": headers,
                        "body": body,
                        "connection": number,
                        "at": time.monotonic(),
                    }
                )
                action = self.script.pop(0) if self.script else "ok"
                if action == "drop":
                    return
                if action == "hang":
                    self.closing.wait(30)
                    return
                status, extra, payload = (
                    (200, {}, b'{"operations": [], "job_id": "j1", "status": "complete"}') if action == "ok" else action
                )
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}", "Content-Type: application/json"]
                head += [f"{name}: {value}" for name, value in extra.items()]
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)


def test_a_get_on_a_connection_closed_under_it_is_sent_again_on_a_new_one(clean_env):
    with Scripted(["ok", "drop"]) as server:
        client = Client(server.url)
        client.operations()
        assert client.status("j1")["status"] == "complete"
    assert [(s["method"], s["connection"]) for s in server.seen] == [("GET", 1), ("GET", 1), ("GET", 2)]


def test_a_submit_on_a_connection_closed_under_it_is_never_sent_twice(clean_env):
    with Scripted(["ok", "drop"]) as server:
        client = Client(server.url)
        client.operations()
        with pytest.raises(requests.ConnectionError):  # the server may have queued it: not resent
            client.submit("sleep", seconds=0)
        time.sleep(0.2)
    assert [s["method"] for s in server.seen] == ["GET", "POST"]


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending(clean_env):
    with Scripted(["ok", (200, {"Connection": "close"}, b'{"job_id": "j2", "status": "submitted"}')]) as server:
        client = Client(server.url)
        client.operations()
        assert client.submit("sleep", seconds=0) == "j2"  # answered, then closed by the server
        assert client.submit("sleep", seconds=0) == "j1"
    assert [(s["method"], s["connection"]) for s in server.seen] == [("GET", 1), ("POST", 1), ("POST", 2)]


def test_a_submit_after_a_pause_opens_a_new_connection_a_get_reuses_it(clean_env, monkeypatch):
    monkeypatch.setattr(transport, "FRESH_AFTER", 0.3)
    with Scripted([]) as server:
        client = Client(server.url)
        client.operations()
        client.submit("sleep", seconds=0)  # right after: the same connection
        time.sleep(0.5)
        client.status("j1")  # a GET is safe to resend: reused
        time.sleep(0.5)
        client.submit("sleep", seconds=0)  # idle past FRESH_AFTER: a new one
    assert [(s["method"], s["connection"]) for s in server.seen] == [("GET", 1), ("POST", 1), ("GET", 1), ("POST", 2)]


@pytest.mark.parametrize("path", PATHS)
def test_a_read_timeout_is_the_same_error_on_both_paths(clean_env, path):
    with Scripted(["hang"]) as server:
        with pytest.raises(requests.RequestException) as failed:
            client_on(path, server.url, timeout=0.3).submit("sleep", seconds=0)
    assert type(failed.value) is requests.ConnectionError and "Read timed out" in str(failed.value)
    assert [s["method"] for s in server.seen] == ["POST"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_waited_out_on_both_paths(clean_env, path, status):
    busy = (status, {"Retry-After": "1"}, b'{"error": "busy", "message": "come back"}')
    with Scripted([busy, busy]) as server:
        client = client_on(path, server.url)
        assert client.submit("sleep", seconds=0) == "j1"
    assert [s["method"] for s in server.seen] == ["POST"] * 3
    at = [s["at"] for s in server.seen]
    assert at[1] - at[0] >= 0.9 and at[2] - at[1] >= 0.9  # waited as told (lower bound only)


@pytest.mark.parametrize("path", PATHS)
def test_a_refusal_that_stays_is_the_last_answer_on_both_paths(clean_env, path):
    busy = (503, {"Retry-After": "1"}, b'{"error": "redis_unavailable", "message": "come back"}')
    with Scripted([busy] * 6) as server:
        with pytest.raises(ApiError) as refused:
            client_on(path, server.url).submit("sleep", seconds=0)
    assert (refused.value.status, refused.value.code) == (503, "redis_unavailable")
    assert len(server.seen) == 6  # 1 + the 5 retries the session allows


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "status, sent, followed",
    [
        (308, "POST", "POST"),
        (307, "POST", "POST"),
        (303, "POST", "GET"),
        (302, "POST", "GET"),
        (301, "POST", "GET"),
        (301, "DELETE", "DELETE"),
        (302, "DELETE", "GET"),
    ],
)
def test_redirects_are_followed_as_requests_follows_them(clean_env, path, status, sent, followed):
    with Scripted([]) as target, Scripted([]) as first:
        first.script = [(status, {"Location": f"{target.url}/submit"}, b"")]
        client = client_on(path, first.url)
        if sent == "POST":
            assert client.submit("sleep", seconds=0) == "j1"
        else:
            client.cancel("j1")
    assert [s["method"] for s in first.seen] == [sent]
    assert [s["method"] for s in target.seen] == [followed]
    assert (target.seen[0]["body"] != b"") is (followed == "POST")


@pytest.mark.parametrize("path", PATHS)
def test_a_repeated_header_is_joined_as_requests_joins_it(clean_env, path):
    class Twice(dict):  # two Link headers in one answer
        def items(self):
            return [("Link", "</a>; rel=next"), ("Link", "</b>; rel=last")]

    with Scripted([(200, Twice(), b'{"job_id": "j1", "status": "complete"}')]) as server:
        answer = client_on(path, server.url)._request("GET", "/status/j1")
    assert answer.headers["link"] == "</a>; rel=next, </b>; rel=last"


@pytest.mark.parametrize("path", PATHS)
def test_a_redirect_to_another_origin_does_not_carry_the_token(clean_env, path):
    with Scripted([]) as target, Scripted([]) as first:
        first.script = [(307, {"Location": f"{target.url}/operations"}, b"")]
        client_on(path, first.url, token="t0ken").operations()
    assert first.seen[0]["headers"].get("authorization") == "Bearer t0ken"
    assert "authorization" not in target.seen[0]["headers"]


@pytest.mark.parametrize("path", PATHS)
def test_a_cookie_the_server_sets_is_sent_back(clean_env, path):
    with Scripted([(200, {"Set-Cookie": "route=a1; Path=/"}, b'{"operations": []}')]) as server:
        client = client_on(path, server.url)
        client.operations()
        client.operations()
    assert [s["headers"].get("cookie") for s in server.seen] == [None, "route=a1"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_is_decoded_on_both_paths(clean_env, path, encoding):
    """The session asks for gzip/deflate (requests' Accept-Encoding); a proxy or ingress may use it."""
    doc = json.dumps({"operations": [{"name": "sleep"}]}).encode()
    packed = gzip.compress(doc) if encoding == "gzip" else zlib.compress(doc)
    with Scripted([(200, {"Content-Encoding": encoding}, packed)]) as server:
        assert client_on(path, server.url).operations() == [{"name": "sleep"}]
    assert "gzip" in server.seen[0]["headers"]["accept-encoding"]


# --- HTTPS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    where = tmp_path_factory.mktemp("tls")
    for name in ("api", "other"):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(where / f"{name}.key"),
                "-out",
                str(where / f"{name}.crt"),
            ],
            check=True,
            capture_output=True,
        )
    return where


class _Operations(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def do_GET(self) -> None:
        type(self).connections.add(id(self.connection))
        payload = b'{"operations": [{"name": "sleep"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def tls_api(tls_files) -> Callable[[], str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "api.crt", tls_files / "api.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Operations)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Operations.connections = set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_with_the_ca_bundle_from_the_environment_goes_the_lean_way(tls_api, tls_files, clean_env, sends):
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(tls_files / "api.crt"))
    client = Client(tls_api)
    for _ in range(3):
        assert client.operations() == [{"name": "sleep"}]
    assert sends == [] and len(_Operations.connections) == 1  # verified, kept alive


def test_an_untrusted_certificate_is_requests_ssl_error(tls_api, tls_files, clean_env):
    """The lean connection fails its handshake, so requests carries the request and raises its own
    SSLError (after its retries: ~15 s)."""
    clean_env.setenv("CURL_CA_BUNDLE", str(tls_files / "other.crt"))
    with pytest.raises(requests.exceptions.SSLError):
        Client(tls_api).operations()


def test_the_lean_tls_connection_checks_the_host_name(tls_api, tls_files, clean_env):
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(tls_files / "api.crt"))  # trusted, but for 127.0.0.1 only
    for host, trusted in (("127.0.0.1", True), ("localhost", False)):
        client = Client(tls_api.replace("127.0.0.1", host))
        origin = client._lean.origin(client.url)
        if trusted:
            origin.connect(5).close()
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="localhost"):
                origin.connect(5)


def test_a_submits_idempotency_key_is_sent_alike_on_both_paths_and_kept_on_a_redirect(clean_env, sends):
    """``submit_and_wait`` sends its own header (``Idempotency-Key``, a new quoted UUID a call) on the
    lean path as requests sends it, and again with a 307/308 redirect's repeated POST."""
    with Scripted([]) as server:
        for path in PATHS:
            client_on(path, server.url, token="t0ken").submit_and_wait("sleep", seconds=0, wait=1)
    assert len(sends) == 1  # the lean one went without requests
    lean, plain = server.seen
    keys_sent = [s["headers"].pop("idempotency-key") for s in (lean, plain)]
    assert all(re.fullmatch(r'"[0-9a-f-]{36}"', k) for k in keys_sent) and keys_sent[0] != keys_sent[1]
    assert (lean["method"], lean["target"], lean["headers"], lean["body"]) == (
        plain["method"],
        plain["target"],
        plain["headers"],
        plain["body"],
    )
    for status in (307, 308):
        with Scripted([]) as target, Scripted([]) as first:
            first.script = [(status, {"Location": f"{target.url}/submit"}, b"")]
            Client(first.url).submit_and_wait("sleep", seconds=0, wait=1)
        assert first.seen[0]["headers"]["idempotency-key"] == target.seen[0]["headers"]["idempotency-key"]
