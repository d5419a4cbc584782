"""HTTP sessions that retry what a server asks to be retried, waiting as long as it says, and that
read their settings from the environment once instead of on every request.

``urllib3.util.Retry`` (installed with requests) mounted on a ``requests`` session: 429 and 503
are retried for every method, POST included, because they mean "not processed, come back"; the
``Retry-After`` header sets the wait (capped, so a hostile or confused server cannot park a
client for an hour). Connection failures before anything was sent are retried; a read that
failed midway is retried only for GETs (``idempotent=True``), never for a POST that may have
been processed. Used by the API client and ``jobqueue data fetch``.

Per request, a plain ``requests`` session scans the whole environment for ``*_proxy`` variables
(twice), looks for a ``.netrc`` and reads ``REQUESTS_CA_BUNDLE``: about 0.4 ms a request, as much
as the API takes to answer one. :class:`Session` resolves the same settings with requests' own
functions once per origin (scheme, host, port) and reuses them, and its adapter sends a request's
headers and a small body in one write (urllib3 writes them apart, so the server wakes twice for
one request). A session reads the environment as it was at its first request to an origin:
make a new session (or ``Client``) to see changed proxy settings.
"""

from __future__ import annotations

import copy
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies, get_netrc_auth
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NameResolutionError, ResponseError, SSLError
from urllib3.util import Retry

RETRY_AFTER_MAX = 60
ONE_WRITE_MAX = 64 * 1024  # a larger body is sent apart (copying it to save a write gains nothing)


class _NoAuth(AuthBase):
    """Stands for "no .netrc entry": a request carrying it is not looked up in .netrc again."""

    def __call__(self, request):
        return request


class BearerToken(AuthBase):
    """The API token as ``Authorization: Bearer``. Set as a session's ``auth`` (not as a header) so
    that requests does not replace it with credentials from .netrc: it consults .netrc only for a
    request without auth."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BearerToken) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __repr__(self) -> str:
        return "BearerToken(***)"


class Session(requests.Session):
    """A ``requests.Session`` that honours HTTP(S)_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    and .netrc exactly as requests does, read once per origin (``trust_env = False`` turns all
    three off, as in requests). A :class:`BearerToken` as its ``auth`` also wins over .netrc on a
    redirect within the origin."""

    def environment(self, url: str, no_proxy: Any = None) -> tuple[dict[str, str], str | None, Any]:
        """(proxies, CA bundle, .netrc auth) for ``url``'s origin, read the first time it is asked.
        The cache is not pickled (requests pickles ``__attrs__`` only): an unpickled session, perhaps
        in another process, reads its own environment."""
        cache = self.__dict__.setdefault("_environment", {})
        parts = urlsplit(url)
        key = (parts.scheme.lower(), parts.netloc.lower(), no_proxy)
        found = cache.get(key)
        if found is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
            found = (get_environ_proxies(url, no_proxy=no_proxy), bundle, get_netrc_auth(url))
            cache[key] = found
        return found

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            try:
                auth = self.environment(request.url)[2]
            except ValueError:  # malformed URL: requests' own prepare names it (InvalidURL)
                return super().prepare_request(request)
            request = copy.copy(request)
            request.auth = auth or _NoAuth()
        return super().prepare_request(request)

    def rebuild_auth(self, prepared_request, response):
        # requests applies .netrc to a redirect's target even when the request had auth; a token
        # kept on the same origin (not stripped) must stay the token
        if (
            isinstance(self.auth, BearerToken)
            and "Authorization" in prepared_request.headers
            and not self.should_strip_auth(response.request.url, prepared_request.url)
        ):
            return
        super().rebuild_auth(prepared_request, response)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        # requests' own merge, with the environment's part from the cache
        if self.trust_env:
            env_proxies, bundle, _ = self.environment(url, proxies.get("no_proxy") if proxies else None)
            if proxies is not None:
                for name, value in env_proxies.items():
                    proxies.setdefault(name, value)
            if verify is True or verify is None:
                verify = bundle or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


class _OneWrite:
    """urllib3's ``request`` sends the header block, then the body: hold both, send them together."""

    _held: bytearray | None = None

    def request(self, method, url, body=None, headers=None, **kwargs):
        small = isinstance(body, (bytes, bytearray)) and len(body) <= ONE_WRITE_MAX
        self._held = bytearray() if small else None
        try:
            super().request(method, url, body, headers, **kwargs)  # type: ignore[misc]
            held = self._held
        finally:
            self._held = None
        if held:
            super().send(bytes(held))  # type: ignore[misc]

    def send(self, data):
        if self._held is not None and isinstance(data, (bytes, bytearray)):
            self._held += data
        else:
            super().send(data)  # type: ignore[misc]


class _Connection(_OneWrite, HTTPConnection):
    pass


class _TLSConnection(_OneWrite, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class OneWriteAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose direct connections send headers and a small body in one write
    (through a proxy, urllib3's own connections are used)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


# OpenSSL's reasons for a first answer that is no TLS record (a plain-HTTP server's "HTTP/1.1 400...")
NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"})
# getaddrinfo's "this name does not exist" (EAI_AGAIN, a DNS server that did not answer, is retried)
NO_SUCH_NAME = frozenset(getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name))


# on an API answer that no retry can change until an operator acts (its data file refused: 503
# data_unavailable, whose Retry-After is for a browser's user): the answer stands, not retried
REFUSAL_HEADER = "Jobqueue-Refusal"


def ssl_cause(error: BaseException | None) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` under requests' and urllib3's wrappers (its ``reason`` names OpenSSL's)."""
    seen: object = error
    for _ in range(6):
        if isinstance(seen, ssl.SSLError):
            return seen
        inner = getattr(seen, "reason", None) or (getattr(seen, "args", None) or [None])[0]
        seen = inner
    return None


def lasting(error: BaseException | None) -> bool:
    """A failure to connect that the same request meets again a second later: a host name that does
    not exist, an https:// URL at a port that does not speak TLS, a certificate not trusted."""
    if isinstance(error, NameResolutionError):
        return getattr(error._reason, "errno", None) in NO_SUCH_NAME
    if isinstance(error, SSLError):
        cause = ssl_cause(error)
        return isinstance(cause, ssl.SSLCertVerificationError) or getattr(cause, "reason", None) in NOT_TLS
    return False


class Deadline:
    """When a whole command must be over (``jobqueue submit --timeout 5``): its retries' waits
    included. Shared by every copy of a :class:`TellingRetry`, so ``reached`` tells the caller
    afterwards that a retry was given up for it (five Retry-Afters of 2 s took 11 s of a 5 s timeout)."""

    def __init__(self, seconds: float, started: float | None = None) -> None:
        """``started``: the ``time.monotonic()`` the command began at, when before now (its modules
        loading, which takes seconds on a loaded machine, counts against its timeout too)."""
        self.seconds = seconds
        self.started = time.monotonic() if started is None else started
        self.at = self.started + seconds
        self.reached = False

    def left(self) -> float:
        return self.at - time.monotonic()


class TellingRetry(Retry):
    """urllib3's ``Retry`` that first tells ``on_wait(status, seconds)`` how long it is about to
    wait for an answer's ``Retry-After`` (a rate limit's wait can be a minute: a command line that
    says nothing meanwhile looks hung), and waits for nothing that would end past ``deadline``
    (the last answer, or the connection's error, stands). Both ride along each retry's copy (``new``)."""

    on_wait: Callable[[int, float], None] | None = None
    on_retry: Callable[[BaseException, float], None] | None = None
    deadline: Deadline | None = None

    def new(self, **kw: Any) -> TellingRetry:
        retry = super().new(**kw)
        retry.on_wait, retry.on_retry, retry.deadline = self.on_wait, self.on_retry, self.deadline
        return retry

    def patience(self) -> float:
        """Seconds of back-off the connection retries left would wait in all (about 15 s at first)."""
        done = len(self.history)
        left = min(n for n in (self.connect, self.total, 10) if isinstance(n, int))
        errors = range(max(done + 1, 2), done + 1 + left)  # the wait after the n-th error in a row
        total = sum(min(self.backoff_max, self.backoff_factor * 2 ** (n - 1)) for n in errors)
        return total if self.deadline is None else max(0.0, min(total, self.deadline.left()))

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        # a mistyped host name or https:// at a plain-HTTP port was tried five times, 15 s of silence
        if lasting(error):
            raise MaxRetryError(_pool, url, error) from error
        if response is not None and response.headers.get(REFUSAL_HEADER):
            # the API's data file is refused: five Retry-Afters of a minute each, then the same answer
            raise MaxRetryError(_pool, url, ResponseError(f"refused: {response.headers[REFUSAL_HEADER]}"))
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        deadline = self.deadline
        if deadline is not None:
            wait = (retry.get_retry_after(response) if response is not None else None) or retry.get_backoff_time()
            if wait >= deadline.left():
                deadline.reached = True
                reason = error or ResponseError(f"gave up at the deadline after {getattr(response, 'status', '?')}")
                raise MaxRetryError(_pool, url, reason) from error
        if error is not None and len(retry.history) == 1 and self.on_retry is not None:
            # a refused connection was retried 15 s in silence: the user saw nothing, then the error
            self.on_retry(error, retry.patience())
        return retry

    def sleep(self, response=None) -> None:
        if self.on_wait is not None and response is not None and self.respect_retry_after_header:
            seconds = self.get_retry_after(response)
            if seconds:
                self.on_wait(response.status, seconds)
        super().sleep(response)


def retrying_session(
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    idempotent: bool = False,
    statuses: tuple[int, ...] = (429, 503),
    on_wait: Callable[[int, float], None] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    deadline: Deadline | None = None,
) -> Session:
    """A session retrying up to ``attempts`` times on ``statuses`` and failed connections;
    ``on_wait(status, seconds)`` is told before each wait a ``Retry-After`` asks for,
    ``on_retry(error, seconds)`` when a request's first failure to connect is to be retried for up to
    ``seconds``; no wait that would end past ``deadline`` is begun."""
    retry = TellingRetry(
        total=attempts,
        connect=attempts,
        read=attempts if idempotent else 0,
        status=attempts,
        status_forcelist=statuses,
        allowed_methods=None,
        backoff_factor=backoff,
        respect_retry_after_header=True,
        retry_after_max=RETRY_AFTER_MAX,
        raise_on_status=False,
    )
    retry.on_wait, retry.on_retry, retry.deadline = on_wait, on_retry, deadline
    session = Session()
    adapter = OneWriteAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
