"""A small HTTP client of the API, for notebooks and the ``jobqueue submit/status`` commands.

    from jobqueue.client import Client
    api = Client("http://127.0.0.1:5000")
    job = api.submit("incident_count_by_date", date="2024-01-15")
    print(api.wait(job)["result"])

The URL is the API's base URL with its scheme, as ``jobqueue --url`` takes it: ``127.0.0.1:5000``
alone is refused with a ValueError saying to write ``http://127.0.0.1:5000`` (it used to fail only
at the first request, with requests' "No connection adapters were found"). A date parameter may be
given as a ``datetime.date``: it is sent as the API's ``YYYY-MM-DD``; a ``decimal.Decimal`` as its
number when a JSON number holds it exactly (else, and for any value JSON cannot carry, a ValueError
naming the parameter). A ``datetime.datetime`` is
refused (ValueError naming the parameter): the API's dates are calendar days in Austin, and which
day a moment falls on is the caller's call (``.date()``, after ``.astimezone()`` if need be).

Waiting uses the server's long poll (``?wait=``), so it costs one request per ``poll`` seconds
and returns the moment the job finishes; ``run`` submits with ``?wait=`` too, so a short job is
one exchange. A 429 or 503 (rate limit, Redis briefly away) is retried
after the ``Retry-After`` the API sends (:mod:`jobqueue.http`), so a script rides out a restart. A
504 on a submit (Redis hung after the job was sent) is never sent again blindly: ``submit`` raises
:class:`StoredUnknown`; ``run``, ``submit_and_wait`` (and ``jobqueue submit``) send an ``Idempotency-Key`` with their
submit and, after a 504 or a connection lost mid-request, send the same request again with the same
key (the API answers the job stored first: one job in any order), or on an API that does not
honour keys find out whether the job was stored.
Proxies, CA bundle and .netrc come from the environment as with ``requests``, read once per client
(:class:`jobqueue.http.Session`), not on every request. A token (``token=`` or ``JOBQUEUE_TOKEN``)
is set as the session's ``auth`` (:class:`jobqueue.http.BearerToken`), replacing any auth a given
session had, so it wins over .netrc credentials for the API's host; without a token .netrc applies. A client made without ``session=`` sends
on kept-alive sockets of its own (:mod:`jobqueue.transport`) whenever requests would do nothing
more (no proxy for the API, no custom auth/cookies/adapters): the same answers and errors at about
the CPU cost of ``http.client``. Pass ``session=`` to have every request go through it.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import time
import uuid
from typing import Any
from urllib.parse import quote
from collections.abc import Callable

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .cliargs import check_token, check_url
from .http import BearerToken, Deadline

DEFAULT_URL = "http://127.0.0.1:5000"
FINAL = {"complete", "failed", "cancelled"}
RESOLVE_SECONDS = 60.0  # how long run/submit_and_wait without a timeout try to resolve a 504
RIDE_OUT_SECONDS = 120.0  # a wait without a timeout rides out an outage (Redis, the API) this long
LONGEST_WAIT = 86_400.0  # a long poll asks for at most this: 1e10 s overflowed the socket's timeout
OUTAGE = (502, 503, 504)  # a stored job's wait keeps polling through these (a 429 is the transport's)
SETTLE = 1.0  # a 404 for a 504's job counts once a second one comes this much later (an API without keys)
KEY_HEADER = "Idempotency-Key"
GRACE = 1.0  # seconds past a deadline a request may take to be answered (a long poll held until then)
NOT_JSON = "http_error"  # ApiError.code of an error answer without the API's JSON (a web page, a proxy's)


class ApiError(RuntimeError):
    """The API answered with an error document (``{"error", "message"}``)."""

    def __init__(self, status: int, code: str, message: str, body: Any = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class StoredUnknown(ApiError):
    """The API could not tell whether a submit was stored (504: Redis did not answer in time, and
    the job may be queued all the same). :meth:`Client.submit` raises it (check :attr:`job_id`'s
    status first: a 404 means it was not stored; submit again then); :meth:`Client.run` and
    :meth:`Client.submit_and_wait` resolve it themselves (sending the same request again with the
    same ``Idempotency-Key``, or on an API that does not honour keys checking the job's status) and
    raise it only when Redis does not answer in time. :attr:`key` is the submit's key when the API
    honoured it; :attr:`job_ids` every attempt's id (at most one of them is stored, under the key)."""

    def __init__(self, status: int, code: str, message: str, body: Any = None, key: str | None = None):
        super().__init__(status, code, message, body)
        self.job_id: str = body["job_id"]
        self.key = key
        self.job_ids = [self.job_id]


class JobFailed(RuntimeError):
    def __init__(self, job: dict[str, Any]):
        super().__init__(f"job {job.get('job_id')} {job.get('status')}: {job.get('error')}")
        self.job = job


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        on_wait: Callable[[int, float], None] | None = None,
        deadline: Deadline | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ):
        """``url``: the API's base URL, ``http://HOST:PORT`` (default ``$JOBQUEUE_URL``, else
        ``http://127.0.0.1:5000``); one without ``http://`` or ``https://``, with spaces, a query
        string or a fragment is a ValueError here that says what to write, as ``jobqueue --url``
        refuses it. ``on_wait(status, seconds)``: told before the client waits out a 429/503's
        Retry-After (its own session only); ``on_retry(error, seconds)``: told when a failure to
        connect is to be retried, for up to ``seconds`` (its own session only). ``deadline``: when every request, its retries and its
        socket waits included, must be over (its own session only): ``jobqueue --timeout``."""
        if url:
            check_url(url, "url")
        elif os.environ.get("JOBQUEUE_URL"):
            check_url(os.environ["JOBQUEUE_URL"], "JOBQUEUE_URL")
        self.url = (url or os.environ.get("JOBQUEUE_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        self.deadline = deadline if session is None else None
        self._lean = None
        if session is None:
            from .http import retrying_session
            from .transport import Lean

            session = retrying_session(on_wait=on_wait, on_retry=on_retry, deadline=deadline)
            self._lean = Lean(session)
        self.session = session
        self._keys_honoured: bool | None = None  # whether the API deduplicates by Idempotency-Key
        given = token is not None
        token = token if given else os.environ.get("JOBQUEUE_TOKEN")
        if token:  # a file's last newline is not part of it (ValueError for one that cannot be sent)
            token = check_token(token, "token=" if given else "JOBQUEUE_TOKEN")
        if token:  # as auth, not a header: requests would replace a header with .netrc credentials
            self.session.auth = BearerToken(token)

    # --- plumbing -----------------------------------------------------------------------
    def _request(
        self, method: str, path: str, timeout: float | None = None, retry: bool = True, **kwargs
    ) -> requests.Response:
        """One request; ``retry=False``: a 429/503 is not retried after its Retry-After (only on the
        client's own transport; a given ``session`` retries as it is set up to)."""
        response = None
        timeout = timeout or self.timeout
        if self.deadline is not None:  # a hung API holds the command little past it either; a long
            # poll asked to hold until the deadline is answered just after it: GRACE for that answer
            timeout = max(GRACE, min(timeout, self.deadline.left() + GRACE))
        lean = self._lean
        if lean is not None and lean.session is self.session and kwargs.keys() <= {"params", "json", "headers"}:
            response = lean.send(self.url, method, path, timeout, retry=retry, **kwargs)
        if response is None:
            response = self.session.request(method, self.url + path, timeout=timeout, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                if not isinstance(body, dict):
                    raise ValueError(body)  # JSON, but not the API's error document
                if response.status_code == 504 and isinstance(body.get("job_id"), str):
                    raise StoredUnknown(
                        504, body.get("error", "error"), body.get("message", ""), body, _honoured(response, kwargs)
                    )
                raise ApiError(response.status_code, body.get("error", "error"), body.get("message", ""), body)
            except ValueError:
                raise ApiError(response.status_code, NOT_JSON, response.text[:200]) from None
        return response

    def close(self) -> None:
        """Close the client's connections (they are also closed when it is garbage-collected)."""
        if self._lean is not None:
            self._lean.close()
        self.session.close()

    # --- API ------------------------------------------------------------------------------
    def operations(self) -> list[dict[str, Any]]:
        return self._request("GET", "/operations").json()["operations"]

    def submit(
        self,
        operation: str,
        params: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **kwparams: Any,
    ) -> str:
        """Queue a job; returns its id. With ``idempotency_key`` (e.g. :func:`new_key`, kept until the
        call succeeds) the same call may be repeated after a :class:`StoredUnknown` or a lost
        connection: an API that honours keys returns the first attempt's job instead of queueing
        another (docs/api.md, ``Idempotency-Key``). Parameters go in ``params`` or as keywords; a
        ``datetime.date`` is sent as ``YYYY-MM-DD`` (a ``datetime.datetime``: ValueError)."""
        body = {"operation": operation, "params": _params(params, kwparams)}
        if idempotency_key is None:
            return self._request("POST", "/submit", json=body).json()["job_id"]
        return self._request("POST", "/submit", json=body, headers={KEY_HEADER: idempotency_key}).json()["job_id"]

    def status(self, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        wait = min(wait, LONGEST_WAIT)  # the API holds a poll MAX_WAIT_SECONDS at most anyway
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        return self._request("GET", f"/status/{_segment(job_id)}", params=params, timeout=self.timeout + wait).json()

    def submit_and_wait(
        self, operation: str, params: dict[str, Any] | None = None, wait: float = 30.0, **kwparams: Any
    ) -> dict[str, Any]:
        """Queue a job and return its document in one exchange (``POST /submit?wait=``): final if
        it ended within ``wait`` seconds, else as it is now (poll on with :meth:`wait`). An API
        that predates ``?wait=`` on submit answers at once with ``{"job_id", "status": "submitted"}``,
        which is that document too. If the connection breaks while the API holds the answer, the
        job may be queued all the same: the request is sent again with its ``Idempotency-Key`` (an
        API that does not honour keys: ``requests.ConnectionError``, as for a lost submit). A 504
        (Redis hung after the job was sent: it may be stored) is resolved here, within
        ``RESOLVE_SECONDS`` (:meth:`_submit_waiting`); :class:`StoredUnknown` only if it cannot be.
        Parameters as for :meth:`submit`."""
        body = {"operation": operation, "params": _params(params, kwparams)}
        return self._submit_waiting(body, wait, None)

    def _submit_waiting(
        self,
        body: dict[str, Any],
        wait: float | None,
        timeout: float | None,
        on_unsure: Callable[[StoredUnknown], None] | None = None,
    ) -> dict[str, Any]:
        """``POST /submit?wait=`` (``wait`` None: a plain ``POST /submit``, answered
        ``{"job_id", "status": "submitted"}``, whose 504 from an API without keys is raised as
        :class:`StoredUnknown`, as :meth:`submit` does) with an ``Idempotency-Key`` (new for this call). When the answer
        is lost (a 504 that echoes the key, or the connection broken or timed out after the request
        went out, on an API known to honour keys) the same request is sent again with the same key,
        paced, within ``timeout`` (``RESOLVE_SECONDS`` if None): the API answers the job the first
        attempt stored, or stores it now, so one job runs whatever order Redis ran the attempts in.
        An API that does not honour keys (an older one: its 504 does not echo the key) gets the
        status check instead (:meth:`_resolve`). ``on_unsure`` is told of each 504."""
        start = time.monotonic()
        deadline = start + (RESOLVE_SECONDS if timeout is None else timeout)
        key = new_key()
        attempts: list[str] = []  # ids of attempts answered 504 under this key: at most one is stored
        pacer = Pacer()
        took = 0.0  # how long the last attempt took: a re-send starts only if as long fits the deadline
        while True:
            if pacer.pause:
                left = deadline - time.monotonic()
                time.sleep(max(0.0, min(pacer.pause, left)))
            sent = time.monotonic()
            try:
                response = self._request(
                    "POST",
                    "/submit",
                    params=None if wait is None else {"wait": f"{wait:g}"},
                    json=body,
                    timeout=self.timeout + (wait or 0.0),
                    headers={KEY_HEADER: key},
                )
                self._keys_honoured = response.headers.get(KEY_HEADER) == key
                return response.json()
            except StoredUnknown as unsure:
                if on_unsure is not None:
                    on_unsure(unsure)
                if unsure.key is not None:  # honoured: send it again, same key (none stored twice)
                    self._keys_honoured = True
                    attempts.append(unsure.job_id)
                    unsure.job_ids = list(attempts)
                    took = time.monotonic() - sent
                    if time.monotonic() + took >= deadline:  # another such wait would end past it
                        raise
                    pacer.pause = min(Pacer.MOST, pacer.pause * 2 or Pacer.FIRST)
                    continue
                if wait is None:  # a plain submit to an API that ignores keys: the caller checks
                    raise
                job = self._resolve(unsure, deadline)  # an API that ignores keys: check the status
                key = new_key()
            except (requests.ConnectionError, requests.Timeout) as lost:
                took = time.monotonic() - sent
                if not _maybe_sent(lost) or time.monotonic() + took >= deadline or not self._honours_keys(deadline):
                    raise
                pacer.pause = min(Pacer.MOST, pacer.pause * 2 or Pacer.FIRST)
                continue
            if job is not None:  # stored: wait for it what is left of ``wait``
                left = (wait or 0.0) - (time.monotonic() - start)
                return job if job["status"] in FINAL or left <= 0 else self.status(job["job_id"], wait=left)
            # not stored: submit again, once for this 504 (a new id; another 504 is resolved anew)

    def _honours_keys(self, deadline: float) -> bool:
        """Whether the API deduplicates submits by ``Idempotency-Key`` (so a submit whose answer was
        lost may be sent again): known from an earlier answer that echoed a key, else asked once, at
        no cost: a malformed key and no job, which an API that honours keys refuses for the key
        (``invalid_idempotency_key``) and one that ignores the header (an older API, or a proxy that
        drops it) for the body; neither stores anything. Unknown by ``deadline`` (the API away): False."""
        pacer = Pacer()
        while self._keys_honoured is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pacer.pause:
                time.sleep(min(pacer.pause, left))
            try:
                self._request(
                    "POST", "/submit", json={}, headers={KEY_HEADER: ","}, timeout=min(self.timeout, left), retry=False
                )
                self._keys_honoured = False  # stored nothing ({} is no job), but did not refuse the key
            except ApiError as exc:
                if exc.status < 500:
                    self._keys_honoured = exc.code == "invalid_idempotency_key"
            except (requests.ConnectionError, requests.Timeout):
                pass
            pacer.pause = min(Pacer.MOST, pacer.pause * 2 or Pacer.FIRST)
        return self._keys_honoured

    def _resolve(self, unsure: StoredUnknown, deadline: float) -> dict[str, Any] | None:
        """Whether the job a 504 named was stored: its document if it was, None if not, or
        ``unsure`` raised again if Redis does not answer before ``deadline``.

        Polls ``GET /status/<id>`` (503s and broken connections are waited out: Redis or the API is
        still away), pausing as :class:`Pacer` does. A 404 is an answer from a Redis that runs
        again, but the job's transaction may still be in that Redis's socket buffer, read after the
        read that answered 404 (Redis serves ready connections in epoll's order, not arrival's, 16 kB
        a turn: measured, half the time; docs/delivery.md). So a 404 counts only when a second one
        comes ``SETTLE`` seconds later: by then Redis has read every byte it held (within 5 ms)."""
        pacer = Pacer()
        first_404: float | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise unsure
            if pacer.pause:
                time.sleep(min(pacer.pause, left))
            try:  # not retried by the transport: this loop paces the checks and keeps the deadline
                return self._request(
                    "GET", f"/status/{_segment(unsure.job_id)}", timeout=min(self.timeout, left), retry=False
                ).json()
            except ApiError as exc:
                if exc.status == 404:
                    now = time.monotonic()
                    if first_404 is not None and now - first_404 >= SETTLE:
                        return None
                    first_404 = first_404 or now
                    pacer.pause = SETTLE - (now - first_404)
                    continue
                if exc.status < 500:
                    raise
            except (requests.ConnectionError, requests.Timeout):
                pass
            pacer.pause = min(Pacer.MOST, pacer.pause * 2 or Pacer.FIRST)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 30.0,
        on_update: Callable[[dict[str, Any], float], None] | None = None,
    ) -> dict[str, Any]:
        """Long-poll until the job is final (or ``timeout`` seconds pass); returns the job document.
        ``on_update(job, elapsed)`` is called after each poll (the CLI shows progress with it)."""
        start = time.monotonic()
        job = self.status(job_id, wait=_step(poll, timeout, 0.0))
        return self._until_final(job, start, timeout, poll, on_update)

    def _until_final(
        self,
        job: dict[str, Any],
        start: float,
        timeout: float | None,
        poll: float,
        on_update: Callable[[dict[str, Any], float], None] | None,
    ) -> dict[str, Any]:
        """Long-poll on from ``job`` (a document just read) until it is final or ``timeout`` has
        passed since ``start``. The job is stored, so an outage (503s the transport has waited out,
        the API unreachable) is ridden out within ``timeout`` (``RIDE_OUT_SECONDS`` of outage
        without one): it gave up after the transport's five Retry-Afters, about 10 s, whatever the
        timeout, and the user who submitted again got a second job. When it gives up the error
        raised carries ``job_id``, the job that stays queued."""
        pacer = Pacer()
        outage_since: float | None = None
        while True:
            if on_update:
                on_update(job, time.monotonic() - start)
            if job["status"] in FINAL:
                return job
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                raise TimeoutError(f"job {job['job_id']} still {job['status']} after {timeout:g}s")
            try:
                job = pacer.status(
                    self, job["job_id"], _step(poll, timeout, elapsed), None if timeout is None else timeout - elapsed
                )
                outage_since = None
            except (ApiError, requests.ConnectionError, requests.Timeout) as exc:
                outage_since = ride_out(exc, job["job_id"], outage_since, start, timeout)
                if outage_since is None:
                    raise

    def result(self, job_id: str, wait: float = 0.0) -> Any:
        """The result: a dict for JSON results, bytes for PNGs."""
        wait = min(wait, LONGEST_WAIT)
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        response = self._request("GET", f"/jobs/{_segment(job_id)}/result", params=params, timeout=self.timeout + wait)
        if response.headers.get("Content-Type", "").startswith("image/"):
            return response.content
        return response.json()

    def run(
        self, operation: str, params: dict[str, Any] | None = None, timeout: float | None = None, **kwparams: Any
    ) -> Any:
        """Submit, wait, and return the result (raises JobFailed if the job did not complete). A
        job that ends within 30 s takes one exchange (:meth:`submit_and_wait`); a longer one is
        long-polled on, as is every job on an API that predates ``?wait=`` on submit. A 504 on the
        submit is resolved within ``timeout`` (``RESOLVE_SECONDS`` without one): one job runs.
        Parameters as for :meth:`submit`."""
        start = time.monotonic()
        body = {"operation": operation, "params": _params(params, kwparams)}
        job = self._submit_waiting(body, _step(30.0, timeout, 0.0), timeout)
        job = self._until_final(job, start, timeout, 30.0, None)
        if job["status"] != "complete":
            raise JobFailed(job)
        return self.result(job["job_id"]) if job.get("result") is None else job["result"]

    def jobs(self, status: str | None = None, operation: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("status", status), ("operation", operation), ("limit", limit)) if v}
        return self._request("GET", "/jobs", params=params).json()["jobs"]

    def queue(self) -> dict[str, Any]:
        """``GET /queue``: depth, in progress, delayed retries, workers, the last 15 minutes."""
        return self._request("GET", "/queue").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/jobs/{_segment(job_id)}").json()


def ride_out(exc: BaseException, job_id: str, since: float | None, start: float, timeout: float | None) -> float | None:
    """A poll of the stored job ``job_id`` failed with ``exc``: wait a little and return when this
    outage began (``since``, or now), for the caller to poll again; None when the caller should
    re-raise ``exc``: no outage (a 4xx, a 504 of a submit), or the wait is over (``timeout`` after
    ``start``, else ``RIDE_OUT_SECONDS`` of outage), then with ``exc.job_id`` set: the job stays
    queued. (Raised here, ``exc`` would hold this frame and the frame ``exc``: a cycle that kept the
    client's sockets open until the garbage collector ran.)"""
    if isinstance(exc, ApiError) and (exc.status not in OUTAGE or isinstance(exc, StoredUnknown)):
        return None
    now = time.monotonic()
    since = now if since is None else since
    until = start + timeout if timeout is not None else since + RIDE_OUT_SECONDS
    if now < until:
        time.sleep(min(Pacer.MOST, until - now))
    if time.monotonic() >= until:  # the outage lasted to the end: said as that, not as a slow job
        exc.job_id = job_id  # type: ignore[attr-defined]
        return None
    return since


class Pacer:
    """Spaces out long polls the API did not hold. A poll answered without a final status well
    before its wait (MAX_WAITERS polls already parked, MAX_WAIT_SECONDS below the wait asked, the
    API process stopping, an API without ``?wait=``) would otherwise be sent again at once, in a
    loop of hundreds of requests a second, just when the API is busiest. After such an answer the
    next poll first pauses 0.1 s, doubling up to 2 s; a poll the API held resets the pause."""

    FIRST, MOST = 0.1, 2.0

    def __init__(self) -> None:
        self.pause = 0.0

    def status(self, client: Client, job_id: str, wait: float, left: float | None = None) -> dict[str, Any]:
        """``client.status(job_id, wait=wait)``, after the pause an early answer asked for (never
        beyond ``left`` seconds)."""
        if self.pause:
            time.sleep(self.pause if left is None else max(0.0, min(self.pause, left)))
        sent = time.monotonic()
        job = client.status(job_id, wait=wait)
        early = job["status"] not in FINAL and time.monotonic() - sent < min(wait / 2, 0.5)
        self.pause = min(self.MOST, self.pause * 2 or self.FIRST) if early else 0.0
        return job


def _params(params: dict[str, Any] | None, kwparams: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters as the API takes them: ``params`` and the keywords, a ``datetime.date``
    as its ``YYYY-MM-DD`` (the form every date parameter takes, docs/api.md), a ``decimal.Decimal``
    as the JSON number that is its value (:func:`_number`). A ``datetime.datetime`` is refused,
    naming the parameter: it was a TypeError ("not JSON serializable") from deep in the request, and
    its ISO form with a time is not a date the API takes; which Austin day a moment is, is the
    caller's to say. Any other value JSON cannot write (a set, a numpy integer) is refused by name
    too, before anything is sent."""
    merged = {**(params or {}), **kwparams}
    for name, value in merged.items():
        if isinstance(value, float) and not math.isfinite(value):  # requests' InvalidJSONError, unnamed
            raise ValueError(f"parameter {name!r} is {value!r}; the API's numbers are finite")
        if value is None or isinstance(value, _PLAIN):
            continue
        if isinstance(value, datetime.datetime):
            raise ValueError(
                f"parameter {name!r} is a datetime ({value.isoformat()}); the API's dates are days: "
                f"pass {name}=<the datetime>.date() (after .astimezone(ZoneInfo('America/Chicago')) if it is aware) "
                "or a 'YYYY-MM-DD' string"
            )
        if isinstance(value, datetime.date):
            merged[name] = value.isoformat()
        elif isinstance(value, decimal.Decimal):
            merged[name] = _number(name, value)
        else:
            try:
                json.dumps(value, allow_nan=False)  # as requests writes the body
            except (TypeError, ValueError):
                raise ValueError(
                    f"parameter {name!r} is a {type(value).__module__}.{type(value).__qualname__}, which JSON "
                    "cannot carry; pass a str, int, float or bool"
                ) from None
    return merged


_PLAIN = (str, int, float, bool)


def _number(name: str, value: decimal.Decimal) -> int | float:
    """A Decimal as the JSON number written for it: an int when it is whole (``Decimal('5')``, also
    ``5.0``), else the float whose shortest form is the Decimal's own digits (``Decimal('0.1')`` is
    written ``0.1``). One no float writes (``Decimal('0.10000000000000000001')``, NaN, Infinity)
    is refused naming the parameter, not rounded behind the caller's back."""
    if not value.is_finite():
        raise ValueError(f"parameter {name!r} is Decimal('{value}'); the API's numbers are finite")
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if decimal.Decimal(repr(as_float)) == value:
        return as_float
    raise ValueError(
        f"parameter {name!r} is Decimal('{value}'), which no JSON number the API reads holds exactly; "
        f"pass float({name}) to round it, or a value with fewer digits"
    )


def _segment(job_id: str) -> str:
    """A job id as one path segment: every character but letters, digits and ``-_~`` %-escaped, dots
    too (``..`` is no path step). ``jobqueue status 'abc/result'`` (or an id with ``?``, ``#``,
    ``%``, a space) went into the path as typed and reached another route ("no such route") or
    another id; escaped, the API judges the id itself (``invalid_job_id``, ``job_not_found``)."""
    return quote(job_id, safe="").replace(".", "%2E")


def new_key() -> str:
    """A submit's ``Idempotency-Key``: a new UUID, as the IETF draft's Structured Field string."""
    return f'"{uuid.uuid4()}"'


def _honoured(response: requests.Response, sent: dict[str, Any]) -> str | None:
    """The key a request sent, when its answer echoes it (the API honoured it), else None."""
    key = (sent.get("headers") or {}).get(KEY_HEADER)
    return key if key is not None and response.headers.get(KEY_HEADER) == key else None


def _maybe_sent(exc: BaseException) -> bool:
    """Whether a failed request may have reached the API (the connection broke or timed out after it
    was sent), as opposed to a connection that was never made (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return not isinstance(reason, (NewConnectionError, NameResolutionError))


def _step(poll: float, timeout: float | None, elapsed: float) -> float:
    """How long the next long poll may hold: ``poll``, or what is left of ``timeout``."""
    return poll if timeout is None else max(0.0, min(poll, timeout - elapsed))
