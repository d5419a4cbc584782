"""The API client's lean transport: a request straight onto a kept-alive socket, answered as a
``requests.Response``, for the common case where ``requests`` would do nothing more than that.

``requests`` spends ~0.25-0.3 ms of CPU a request above ``http.client`` (merging settings,
preparing the request, the cookie jar, urllib3's pool and Retry bookkeeping) -- as much as the API
takes to answer a status read. :class:`Lean` sends on one idle connection per origin (a small
stack of them under threads) with the session's own headers, token and .netrc credentials, parses
the answer with ``http.client`` and rides the session's own ``Retry`` (429/503 + Retry-After).

It steps aside, before anything is sent, whenever requests would behave differently: a proxy
selected for the origin (HTTP(S)_PROXY/ALL_PROXY/NO_PROXY, upper or lower case, read once as
:class:`jobqueue.http.Session` does), session auth other than the client's token, cookies, params,
hooks, extra adapters, a client certificate or ``verify`` set on the session, credentials in the
URL, a path or header requests would re-quote or refuse, a body it cannot encode, and any failure to connect (refused, DNS, TLS,
a missing CA bundle). Those requests take the ``requests`` path, so their errors and retries are
requests' own. A redirect is followed through ``requests`` (its method and auth rules).

Keep-alive, and what is never sent twice (RFC 9110 9.2.2): an idle connection the server has
closed is noticed before reuse (readable while idle) and replaced. If a write fails, the server
cannot hold the whole request, so it is resent on a new connection. If the connection dies after
the request went out, a GET/HEAD/OPTIONS on a reused connection is resent once on a new one; any
other method (a submit, a cancel) is not -- the server may have acted on it -- and raises the
``requests.ConnectionError`` requests raises there. A non-idempotent request on a connection idle
for more than ``FRESH_AFTER`` seconds opens a new one, so a server's keep-alive timeout (the API's
``CLIENT_TIMEOUT_SECONDS``, at least 1 s) cannot close it under the request.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import time
import weakref
import zlib
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from requests.auth import _basic_auth_str
from requests.compat import json as complexjson  # type: ignore[attr-defined]
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, check_header_validity, get_encoding_from_headers, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.connection import create_connection
from urllib3.util.retry import Retry
from urllib3.util.ssl_ import create_urllib3_context
from urllib3.util.wait import wait_for_read

from .http import ONE_WRITE_MAX, BearerToken, Session, _NoAuth

FRESH_AFTER = 1.0  # seconds idle after which a non-idempotent request opens a new connection
IDLE_MAX = 10  # idle connections kept per origin (requests' pool_maxsize)
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# characters requests leaves as they are in a path and query; anything else takes requests' path
PLAIN = re.compile(r"[A-Za-z0-9\-._~/?=&%:@!$'()*+,;]*\Z")
TOKEN = re.compile(r"[\x21-\x7e]+\Z")  # a token sent as it is; anything else takes requests' path


class _Answered:
    """What urllib3's ``Retry.increment``/``sleep`` read of a response."""

    def __init__(self, status: int, headers) -> None:
        self.status, self.headers = status, headers

    def get_redirect_location(self) -> bool:
        return False


class _Origin:
    """One scheme://host:port: its idle sockets and what a request to it needs."""

    def __init__(
        self,
        host: str,
        port: int,
        netloc: str,
        base_path: str,
        tls: dict[str, Any] | None,
        auth: str | None,
        retries: Retry,
    ) -> None:
        self.host, self.port, self.netloc, self.base_path, self.tls = host, port, netloc, base_path, tls
        self.auth = auth  # "Basic ..." from .netrc, or None
        self.retries = retries  # the session's own Retry (429/503, Retry-After)
        self.idle: list[tuple[socket.socket, float]] = []
        self.context: ssl.SSLContext | None = None

    def connect(self, timeout: float) -> socket.socket:
        if self.tls is None:
            return create_connection(
                (self.host, self.port), timeout=timeout, socket_options=HTTPConnection.default_socket_options
            )
        if self.context is None:  # loading a CA bundle costs ~13 ms: once per origin, not per connection
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            context.load_verify_locations(cafile=self.tls.get("ca_certs"), capath=self.tls.get("ca_cert_dir"))
            self.context = context
        conn = HTTPSConnection(
            self.host, self.port, timeout=timeout, cert_reqs="CERT_REQUIRED", ssl_context=self.context
        )
        conn.connect()
        return conn.sock

    def take(self, unsafe: bool) -> socket.socket | None:
        """An idle socket the server has not closed (for an ``unsafe`` method: not idle too long), or None."""
        while self.idle:
            try:
                sock, since = self.idle.pop()
            except IndexError:  # another thread took it
                return None
            if (unsafe and time.monotonic() - since > FRESH_AFTER) or _dropped(sock):
                sock.close()
                continue
            return sock
        return None

    def give(self, sock: socket.socket) -> None:
        if len(self.idle) < IDLE_MAX:
            self.idle.append((sock, time.monotonic()))
        else:
            sock.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop()[0].close()


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or is out of step)."""
    try:
        return wait_for_read(sock, timeout=0.0)
    except (OSError, ValueError):
        return True


class Lean:
    """Sends a ``Client``'s requests on kept-alive sockets when requests would do nothing more;
    :meth:`send` returns None when the request must go through ``session`` instead (nothing sent)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.adapters = tuple(session.adapters.values())
        self.origins: dict[tuple[str, bool], _Origin | None] = {}
        self._headers: tuple[tuple, bytes] = ((), b"")
        weakref.finalize(self, _close, self.origins)  # a dropped Client closes its sockets (as urllib3's pools)

    def __getstate__(self) -> dict[str, Any]:
        return {"session": self.session}  # a pickled Client takes no sockets along: it opens its own

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["session"])  # type: ignore[misc]

    # --- may this request go the lean way? --------------------------------------------------
    def origin(self, base: str) -> _Origin | None:
        """The origin of a client's base URL, or None when requests must carry its requests."""
        s = self.session
        token_only = type(s.auth) is BearerToken and TOKEN.match(s.auth.token)  # the client's own token
        if (
            (s.auth is not None and not token_only)
            or s.proxies
            or s.params
            or s.cert is not None
            or s.verify is not True
            or s.hooks.get("response")
            or len(s.cookies)
            or tuple(s.adapters.values()) != self.adapters
        ):
            return None
        key = (base, s.trust_env)
        if key in self.origins:
            return self.origins[key]
        found = self.origins[key] = self._origin(base)
        return found

    def _origin(self, base: str) -> _Origin | None:
        try:
            parts = urlsplit(base)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            return None  # requests names it (InvalidURL)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or not parts.hostname.isascii():
            return None  # requests carries credentials, IDNA names
        if not PLAIN.match(parts.path) or parts.query or parts.fragment:
            return None
        if self.session.trust_env:
            proxies, bundle, netrc = self.session.environment(base)  # jobqueue.http.Session: read once
            if select_proxy(base, proxies):
                return None
        else:
            bundle, netrc = None, None
        tls = None
        if scheme == "https":
            where = bundle or DEFAULT_CA_BUNDLE_PATH
            if not os.path.exists(where):
                return None  # requests raises its own OSError naming it
            tls = {"ca_cert_dir": where} if os.path.isdir(where) else {"ca_certs": where}
        retries = getattr(self.session.get_adapter(base), "max_retries", None)
        if not isinstance(retries, Retry):
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if port != (443 if tls is not None else 80):  # the Host header http.client writes for requests
            host += f":{port}"
        return _Origin(
            parts.hostname, port, host, parts.path.rstrip("/"), tls, _basic_auth_str(*netrc) if netrc else None, retries
        )

    def _header_block(self, origin: _Origin) -> bytes:
        """The session's headers (+ its token, else .netrc Basic auth) as bytes, rebuilt only when
        they change. As in requests, a token (session auth) means .netrc is not read."""
        items = tuple(self.session.headers.items())
        token = self.session.auth
        auth = f"Bearer {token.token}" if isinstance(token, BearerToken) else origin.auth
        key = (items, auth)
        if self._headers[0] != key:
            lines = []
            for name, value in items:
                if value is None or (auth and name.lower() == "authorization"):
                    continue  # requests: auth or .netrc credentials replace the session's Authorization
                if not isinstance(name, str) or not isinstance(value, str):
                    raise TypeError("bytes header: requests' path encodes it")
                check_header_validity((name, value))  # requests' own check: InvalidHeader
                lines.append(f"{name}: {value}\r\n")
            if auth:
                lines.append(f"Authorization: {auth}\r\n")
            self._headers = (key, "".join(lines).encode("latin-1"))
        return self._headers[1]

    # --- sending ----------------------------------------------------------------------------
    def send(
        self,
        base: str,
        method: str,
        path: str,
        timeout: float,
        params: dict | None = None,
        json: Any = None,
        retry: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response | None:
        """``headers``: the request's own (a submit's ``Idempotency-Key``), after the session's."""
        origin = self.origin(base)
        if origin is None or not PLAIN.match(path) or not isinstance(timeout, (int, float)):
            return None
        target = origin.base_path + path
        if params:
            query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
            if query:
                target += "?" + query
        body = b""
        extra = ""
        if json is not None:
            try:
                body = complexjson.dumps(json, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError):
                return None  # requests raises InvalidJSONError
            extra = f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        elif method not in ("GET", "HEAD"):
            extra = "Content-Length: 0\r\n"  # as requests sends it (a DELETE, a bodiless POST)
        try:
            block = self._header_block(origin)
            for name, value in (headers or {}).items():
                check_header_validity((name, value))
                if not TOKEN.match(name) or not value.isascii():
                    return None  # requests encodes (or refuses) it
                extra += f"{name}: {value}\r\n"
        except (TypeError, UnicodeEncodeError, requests.exceptions.InvalidHeader):
            return None  # requests sends it, or names what is wrong
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {origin.netloc}\r\n".encode("latin-1")
            + block
            + extra.encode("latin-1")
            + b"\r\n"
        )
        raw = (head + body,) if len(body) <= ONE_WRITE_MAX else (head, body)  # one write: one wake-up
        url = base + path if not params else base + target[len(origin.base_path) :]
        retries: Retry = origin.retries
        while True:
            answer = self._exchange(origin, method, raw, url, timeout)
            if answer is None:
                return None
            status, answered, content = answer
            if retry and status >= 400 and retries.is_retry(method, status, bool(answered.get("Retry-After"))):
                try:
                    retries = retries.increment(method, url, response=_Answered(status, answered))  # type: ignore[arg-type]
                except MaxRetryError:
                    pass  # raise_on_status=False: the last answer stands
                else:
                    retries.sleep(_Answered(status, answered))  # type: ignore[arg-type]
                    continue
            break
        if status in REDIRECTS and answered.get("Location"):
            return self._redirect(method, url, status, answered["Location"], json, timeout, headers)
        return self._response(url, status, answered, content)

    def _exchange(self, origin: _Origin, method: str, raw: tuple[bytes, ...], url: str, timeout: float):
        """(status, headers, body) of one request, or None if it is to go through requests."""
        sock = origin.take(unsafe=method not in SAFE)
        reused = sock is not None
        for attempt in (1, 2):
            if sock is None:
                try:
                    sock = origin.connect(timeout)
                except Exception:  # refused, DNS, TLS, bad bundle: requests' path says it
                    return None
                reused = False
            try:
                sock.settimeout(timeout)
                for part in raw:
                    sock.sendall(part)
            except OSError:
                sock.close()  # the server cannot have the whole request: send it again, fresh
                sock = None
                if reused and attempt == 1:
                    continue
                return None
            try:
                answer = http.client.HTTPResponse(sock, method=method)
                answer.begin()
            except TimeoutError as exc:
                sock.close()
                raise _failed(origin, url, _timed_out(url, timeout)) from exc
            except (OSError, http.client.HTTPException) as exc:
                sock.close()
                sock = None
                if reused and attempt == 1 and method in SAFE:
                    continue  # a stale keep-alive: a GET is safe to resend
                raise _failed(origin, url, ProtocolError("Connection aborted.", exc)) from exc
            try:
                content = answer.read()
            except TimeoutError as exc:
                sock.close()
                raise requests.ConnectionError(_timed_out(url, timeout)) from exc
            except (OSError, http.client.HTTPException) as exc:
                sock.close()
                raise ChunkedEncodingError(ProtocolError(f"Connection broken: {exc!r}", exc)) from exc
            if answer.will_close:
                sock.close()
            else:
                origin.give(sock)
            items = answer.msg.items()
            headers = CaseInsensitiveDict(items)
            if len(headers) != len(items):  # a repeated header: joined with ", " as urllib3 does
                headers = CaseInsensitiveDict()
                for name, value in items:
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if "Set-Cookie" in headers:  # kept as requests keeps them; later requests carry them (requests' path)
                extract_cookies_to_jar(
                    self.session.cookies,
                    SimpleNamespace(url=url, headers={}),
                    SimpleNamespace(_original_response=answer),
                )
            return answer.status, headers, _decoded(content, headers.get("Content-Encoding"))
        return None

    def _redirect(
        self,
        method: str,
        url: str,
        status: int,
        location: str,
        json: Any,
        timeout: float,
        own: dict[str, str] | None = None,
    ):
        """Follow a redirect the way requests does, through requests (method, body and auth rules);
        ``own``: the request's own headers, sent again with it."""
        target = urljoin(url, location)
        # requests' rebuild_method: 303 and 302 become GET, 301 only for a POST; HEAD stays HEAD
        keep = status in (307, 308) or method == "HEAD" or (status == 301 and method != "POST")
        headers: dict[str, str | None] | None = dict(own) if own and keep else None
        auth = None
        if self.session.should_strip_auth(url, target):
            # requests drops the Authorization (a token too) and applies .netrc for the new origin
            headers, auth = {**(headers or {}), "Authorization": None}, _NoAuth()
            if self.session.trust_env:
                try:
                    auth = self.session.environment(target)[2] or auth
                except ValueError:
                    pass  # requests names the malformed URL
        return self.session.request(
            method if keep else "GET", target, json=json if keep else None, headers=headers, auth=auth, timeout=timeout
        )

    @staticmethod
    def _response(url: str, status: int, headers: CaseInsensitiveDict, content: bytes) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.headers = headers
        response._content = content
        response.encoding = get_encoding_from_headers(headers)
        response.url = url
        response.reason = http.client.responses.get(status, "")
        return response

    def close(self) -> None:
        _close(self.origins)


def _close(origins: dict[tuple[str, bool], _Origin | None]) -> None:
    for origin in list(origins.values()):
        if origin is not None:
            origin.close()


def _failed(origin: _Origin, url: str, reason: Exception) -> requests.ConnectionError:
    """The error requests raises when a request dies after it was sent (Client's Retry has read=0)."""
    pool = f"HTTPConnectionPool(host={origin.host!r}, port={origin.port})"
    return requests.ConnectionError(MaxRetryError(pool, urlsplit(url).path, reason))  # type: ignore[arg-type]


def _timed_out(url: str, timeout: float) -> ReadTimeoutError:
    return ReadTimeoutError(None, url, f"Read timed out. (read timeout={timeout})")  # type: ignore[arg-type]


def _decoded(content: bytes, encoding: str | None) -> bytes:
    """Undo gzip/deflate as urllib3 does for requests (the session asks for them)."""
    if not encoding or not content:
        return content
    encoding = encoding.strip().lower()
    try:
        if encoding == "gzip":
            out, data = b"", content
            while data:  # concatenated members
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out += inflater.decompress(data)
                data = inflater.unused_data
            return out
        if encoding == "deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ContentDecodingError(
            f"Received response with content-encoding: {encoding}, but failed to decode it.", exc
        ) from exc
    return content
