"""``jobqueue submit`` and ``jobqueue status``: the API from a terminal (wired in by cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NameResolutionError, ProtocolError, ReadTimeoutError

from .cliargs import Exit, UsageError, check_token, check_url, check_writable, parse_pairs, seconds, typed, wait_seconds
from .client import DEFAULT_URL, NOT_JSON, OUTAGE, ApiError, Client, JobFailed, StoredUnknown, _step
from .http import NOT_TLS, Deadline, ssl_cause

PROGRESS_EVERY = 2.0  # seconds between progress lines while --wait waits


def api_options() -> argparse.ArgumentParser:
    """``--url`` and ``--token``: the options of every command that talks to the API (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="API base URL (default $JOBQUEUE_URL or http://127.0.0.1:5000)")
    common.add_argument(
        "--token", help="bearer token when the server sets API_TOKEN or API_TOKENS: yours (default $JOBQUEUE_TOKEN)"
    )
    return common


def add_commands(sub: argparse._SubParsersAction) -> None:
    common = api_options()

    p = sub.add_parser(
        "submit",
        parents=[common],
        help="submit a job to the API",
        description="Submit OPERATION with key=value parameters; --wait waits and prints the result.",
    )
    p.add_argument("operation", help="what to run (`jobqueue operations` lists them)")
    p.add_argument(
        "params",
        nargs="*",
        default=[],  # without a default argparse lists key=value as required when nothing is given
        metavar="key=value",
        help="parameters, typed by the operation's declaration (n=5 is a number, road=183 text)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    p.add_argument(
        "--timeout",
        type=wait_seconds,
        default=None,
        help="give up waiting (and retrying the submit) after this many seconds, more than 0",
    )
    p.add_argument(
        "--output",
        "-o",
        help="with --wait: save the result here, - for standard output (PNG results default to <job_id>.png)",
    )
    p.set_defaults(client_handler=_submit)

    p = sub.add_parser("status", parents=[common], help="show a job's status")
    p.add_argument("job_id", help="the id submit printed")
    p.add_argument("--wait", type=seconds, default=0.0, metavar="SECONDS", help="long-poll up to SECONDS")
    # typed by habit from jobs/info/watch/cancel, it was "unrecognized arguments: --json" (exit 2)
    p.add_argument("--json", action="store_true", help="the job as JSON, which status always prints")
    p.set_defaults(client_handler=_status)


def parse_params(declared: dict[str, Any] | None, pairs: list[str]) -> dict[str, Any]:
    """The one key=value parser (:mod:`jobqueue.cliargs`), typed by the parameters the API
    declares for the operation (``road=183`` stays the text "183"; ``n=5`` becomes 5)."""
    raw = parse_pairs(pairs)
    return typed(declared["params"], raw) if declared is not None else raw  # unknown: the API names it


def _check_default_png(operation: str, declared: dict[str, Any] | None) -> None:
    """An operation the API declares as a PNG (``"result": "image/png"`` in ``GET /operations``) is
    saved as <job_id>.png in the current folder: check that folder can take a file before the job
    is submitted (it used to be found out only after the job had run, exit 5)."""
    if declared is None or declared.get("result") != "image/png":
        return
    folder = os.getcwd()
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".jobqueue-check-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{operation} makes a PNG, saved as <job_id>.png in the current folder {folder}, which cannot be "
            f"written ({exc.strerror}): give --output FILE.png, or run it from a folder you can write"
        ) from None


def told_wait(status: int, seconds: float) -> None:
    """Say why nothing happens for a while: a rate limit's Retry-After can be most of a minute."""
    why = "rate limited (429)" if status == 429 else f"busy ({status})"
    print(f"jobqueue: the API answered {why}: trying again in {seconds:.0f} s, as it asks", file=sys.stderr)


def told_retry(error: BaseException, seconds: float) -> None:
    """Say at once that the API did not answer and is being tried again (once a command)."""
    if _WAITING.told_retry or seconds <= 0:
        return
    _WAITING.told_retry = True
    why = getattr(error.__cause__, "strerror", None) or type(error).__name__
    print(
        f"jobqueue: no connection to the API ({why.lower()}): trying again for up to {seconds:.0f} s in case it is "
        "restarting (Ctrl-C to stop)",
        file=sys.stderr,
    )


def _progress(job: dict[str, Any], elapsed: float) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{job['job_id']}: {job['status']:<11} {elapsed:6.1f}s")
        sys.stderr.flush()
    else:
        print(f"{job['job_id']}: {job['status']} after {elapsed:.1f}s", file=sys.stderr)


def _submit(args: argparse.Namespace) -> int:
    if args.output is not None and not args.wait:  # it submitted, saved nothing and exited 0
        raise UsageError("--output saves the result, which only --wait waits for: add --wait (nothing was submitted)")
    if args.output and args.output != STDOUT:  # before the job is submitted, not after it ran
        check_writable(args.output)
    client = client_for(args)
    declared = next((op for op in client.operations() if op["name"] == args.operation), None)
    if args.wait and not args.output:
        _check_default_png(args.operation, declared)
    if args.output == STDOUT and sys.stdout.isatty() and (declared or {}).get("result") == "image/png":
        raise UsageError(
            f"{args.operation} makes a PNG, and --output - would print its bytes on this terminal: "
            "redirect it (> plot.png, | display) or give --output FILE.png (nothing was submitted)"
        )
    params = parse_params(declared, args.params)
    _WAITING.sending = True  # a Ctrl-C from here until an id is known may leave a stored job unnamed
    if not args.wait:  # keyed: after a 504 or a lost answer the same request is sent again (one job)
        body = {"operation": args.operation, "params": params}
        job = client._submit_waiting(body, None, _left(args), _unsure_keyed)
        _WAITING.sending = False
        print(json.dumps({"job_id": job["job_id"], "status": "submitted"}))
        return 0
    # one exchange: a job that ends within the first 2 s is answered by the submit itself
    start = command_start(args)  # every wait below ends by the one deadline, start + --timeout
    body = {"operation": args.operation, "params": params}  # a 504 is resolved within --timeout (or 60 s)
    elapsed = time.monotonic() - start
    job = client._submit_waiting(body, _step(PROGRESS_EVERY, args.timeout, elapsed), _left(args), _unsure)
    print(f"submitted {job['job_id']}", file=sys.stderr)
    _WAITING.job_id, _WAITING.sending = job["job_id"], False
    job = client._until_final(job, start, args.timeout, PROGRESS_EVERY, _progress)
    _WAITING.job_id = None
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if job["status"] != "complete":
        raise JobFailed(job)
    return _emit(client, job, args.output)


def _unsure_keyed(exc: StoredUnknown) -> None:
    """A plain submit's 504: told only when it is sent again (else the exit message says it all)."""
    if exc.key is not None:
        _unsure(exc)


def _unsure(exc: StoredUnknown) -> None:
    then = (
        "sending it again with the same Idempotency-Key (one job either way)"
        if exc.key is not None
        else "checking its status before submitting again"
    )
    print(
        f"the API answered {exc.status} {exc.code}: the job {exc.job_id} may have been stored; {then}", file=sys.stderr
    )


def _emit(client: Client, job: dict[str, Any], output: str | None) -> int:
    if job.get("result_type") == "image/png" or (job.get("result") is None and job.get("result_url")):
        body = client.result(job["job_id"])
        if isinstance(body, bytes):
            path = output or f"{job['job_id']}.png"
            return _save(client, job["job_id"], path, body, f"saved {path} ({len(body)} bytes)")
        result = body
    else:
        result = job.get("result")
    text = json.dumps(result, indent=2)
    if output:
        return _save(client, job["job_id"], output, (text + "\n").encode(), f"saved {output}")
    print(text)
    return 0


STDOUT = "-"  # --output - : the result on standard output, as curl -o - and tar -f - take it


def _save(client: Client, job_id: str, path: str, data: bytes, done: str) -> int:
    """Write a finished job's result; a write that fails (a full disk, a read-only working folder
    for the default <job_id>.png) is one line saying where the result still is, not a traceback.
    ``-`` is standard output (it made a file named "-" in the current folder)."""
    if path == STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return 0
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        return _error(
            f"job {job_id} completed, but its result could not be saved to {path}: {exc.strerror}; "
            f"it stays on the server: fetch it from {client.url}/jobs/{job_id}/result",
            Exit.NOT_SAVED,
        )
    print(done)
    return 0


def _status(args: argparse.Namespace) -> int:
    job = client_for(args).status(args.job_id, wait=args.wait)
    print(json.dumps(job, indent=2))
    return 0


def command_start(args: argparse.Namespace) -> float:
    """The ``time.monotonic()`` the command began at, which ``--timeout`` counts from: a wait that
    counted from its own start (after the modules loaded and the operations were read) gave the
    command more than the user's timeout."""
    deadline: Deadline | None = getattr(args, "deadline", None)
    if deadline is not None:
        return deadline.started
    started = getattr(args, "started", None)
    return time.monotonic() if started is None else started


def _left(args: argparse.Namespace) -> float | None:
    """What is left of ``--timeout`` (None: no timeout given), for a call that takes its own timeout."""
    deadline: Deadline | None = getattr(args, "deadline", None)
    return None if deadline is None else max(0.0, deadline.left())


def client_for(args: argparse.Namespace) -> Client:
    """The command's client: ``--timeout`` (where the command has one) bounds all it sends, retries included."""
    deadline = getattr(args, "deadline", None)
    return Client(args.url, args.token, on_wait=told_wait, deadline=deadline, on_retry=told_retry)


def run(args: argparse.Namespace) -> int:
    """Run a client subcommand; every failure becomes one line on stderr and an ``Exit`` status."""
    _WAITING.job_id, _WAITING.sending = None, False  # nothing from an earlier run in this process
    _WAITING.told_retry = False
    timeout = getattr(args, "timeout", None)
    # from the command's start, as the user counts (main() sets it; in-process callers may not)
    args.deadline = Deadline(timeout, getattr(args, "started", None)) if timeout is not None else None
    try:
        _check_url(args)
        _check_token(args)
        _check_job_ids(args)
        _check_ca_bundle(args)
        return args.client_handler(args)
    except UsageError as exc:
        return _error(str(exc), Exit.USAGE)
    except StoredUnknown as exc:  # not resent blindly: the job may be queued; say which id to check
        if len(exc.job_ids) > 1:  # attempts under one key: at most one of them is stored
            ids = ", ".join(exc.job_ids)
            return _error(
                f"the API answered {exc.status} {exc.code} to each of {len(exc.job_ids)} attempts under one "
                f"Idempotency-Key: at most one job was stored, as one of {ids}; check `jobqueue status <id>` "
                "before submitting again",
                Exit.UNAVAILABLE,
            )
        return _error(
            f"the API answered {exc.status} {exc.code}: the job {exc.job_id} may have been stored; "
            f"check `jobqueue status {exc.job_id}` before submitting again",
            Exit.UNAVAILABLE,
        )
    except ApiError as exc:
        if exc.code == NOT_JSON:  # a web server's HTML error page: it was dumped, and a 404 was "usage"
            url = _url(args)
            if exc.status in OUTAGE:  # a proxy's own page (502, 503, 504) while what it fronts is away
                return _error(
                    f"{url} answered {exc.status} without the API's JSON (a proxy in front of the API?): "
                    f"{_gave_up(args) or 'try again later'}{_still_queued(exc)}",
                    Exit.UNAVAILABLE,
                )
            return _error(
                f"{url} answered {exc.status}, but not with the API's JSON: is it the API's base URL (the one "
                "that answers /healthz)? Point --url or JOBQUEUE_URL at it",
                Exit.UNAVAILABLE,
            )
        if exc.code == "data_unavailable":  # not retried: it lasts until the data file is fixed (http.py)
            return _error(f"the API answered {exc}", Exit.UNAVAILABLE)
        if exc.status >= 500:
            retried = f"; {_gave_up(args)}" if _gave_up(args) else " (retried; try again later)"
            return _error(f"the API answered {exc}{retried}{_still_queued(exc)}", Exit.UNAVAILABLE)
        if exc.status == 401:  # the API's message names the header; a CLI user gives the token otherwise
            given = (
                "the token given was refused" if (args.token or os.environ.get("JOBQUEUE_TOKEN")) else "no token given"
            )
            return _error(f"{exc} ({given}: pass yours with --token or JOBQUEUE_TOKEN)", Exit.USAGE)
        url = _url(args)
        parts = urlsplit(url)
        if exc.status == 404 and exc.code == "not_found" and parts.path.strip("/"):
            # `--url http://127.0.0.1:5000/submit` (the URL the README's curl lines post to) said only
            # "no such route": the route was in the URL, and every command then joins its own to it
            source = "--url" if args.url else "JOBQUEUE_URL"
            return _error(
                f"{exc} ({source} is the API's base URL, the one that answers /healthz: leave out "
                f"{parts.path!r} ({parts.scheme}://{parts.netloc}))",
                Exit.USAGE,
            )
        return _error(str(exc), Exit.USAGE)
    except JobFailed as exc:
        return _error(str(exc), Exit.FAILED)
    except TimeoutError as exc:
        return _error(str(exc), Exit.TIMEOUT)
    except requests.exceptions.InvalidJSONError:  # something answered, but not the API
        url = _url(args)
        return _error(
            f"{url} answered, but not with the API's JSON: is it the API's base URL (the one that answers /healthz)?",
            Exit.UNAVAILABLE,
        )
    except requests.RequestException as exc:  # connection refused, name not found, read timeout
        gave_up = f"; {_gave_up(args)}" if _gave_up(args) else ""
        return _error(f"{_unreachable(args, exc)}{gave_up}{_still_queued(exc)}", Exit.UNAVAILABLE)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback
        if _WAITING.sending and not _WAITING.job_id:  # the API may have stored it before answering
            return _error(
                "interrupted while the submit was sent: the job may have been stored; check "
                "`jobqueue jobs` (newest first) before submitting again",
                INTERRUPTED,
            )
        return _error(f"interrupted{_still_queued(_WAITING)}", INTERRUPTED)


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped


class _Waiting:
    """The job ``submit --wait`` is waiting for, once it is stored (for the message of a Ctrl-C)."""

    job_id: str | None = None
    sending: bool = False  # a submit is on its way and no id is known yet
    told_retry: bool = False  # the user was told a failed connection is being retried


_WAITING = _Waiting()


def _gave_up(args: argparse.Namespace) -> str:
    """Said when a retry was not begun because it would have ended past ``--timeout``."""
    deadline: Deadline | None = getattr(args, "deadline", None)
    if deadline is None or not deadline.reached:
        return ""
    return f"gave up at --timeout {deadline.seconds:g}s, retrying until then; try again later"


def _still_queued(exc: object) -> str:
    """A wait that stopped on a stored job (``job_id`` set by ``Client._until_final``, or the one
    ``submit --wait`` waits for): say it stays queued, so the user checks it rather than submits again."""
    job_id = getattr(exc, "job_id", None)
    if not job_id:
        return ""
    return f"; job {job_id} is stored and carries on: check `jobqueue status {job_id}`, do not submit it again"


def _url(args: argparse.Namespace) -> str:
    """The API's URL as the client picks it (``--url``, else $JOBQUEUE_URL, else the default), for messages."""
    return args.url or os.environ.get("JOBQUEUE_URL") or DEFAULT_URL


def _unreachable(args: argparse.Namespace, exc: requests.RequestException) -> str:
    """Why the API could not be reached, in words that name the fix. A name that does not resolve and
    an https:// URL at a plain-HTTP port both said "cannot reach ... is it running (make up)?", as a
    refused connection does, sending the user to start a service that was running."""
    url = _url(args)
    env = not args.url and bool(os.environ.get("JOBQUEUE_URL"))
    source, give = ("JOBQUEUE_URL", "JOBQUEUE_URL=") if env else ("--url", "--url ")
    parts = urlsplit(url)
    reason = _cause(exc)
    if isinstance(reason, NameResolutionError):
        return (
            f"cannot reach the API at {url}: the host name {parts.hostname!r} was not found (DNS); "
            f"check the host name in {source}"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        ssl_error = ssl_cause(exc)
        why = getattr(ssl_error, "reason", None) or ""
        if why in NOT_TLS and parts.scheme == "https":
            plain = url.replace("https://", "http://", 1)
            return (
                f"the server at {parts.netloc} does not speak TLS (https://): it answered, but not in TLS; "
                f"the API serves plain HTTP: try {give}{plain}"
            )
        if why == "CERTIFICATE_VERIFY_FAILED":
            detail = getattr(ssl_error, "verify_message", None) or "certificate verify failed"
            return (
                f"the API at {url} presented a TLS certificate this machine does not trust ({detail}): "
                "give its CA bundle in REQUESTS_CA_BUNDLE"
            )
        return f"TLS with the API at {url} failed ({why or ssl_error or exc}); check {source} and its scheme"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return (
            f"cannot reach the API at {url}: the connection was not accepted within the timeout (a firewall, "
            f"or an address nothing answers on); check {source}"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(reason, ReadTimeoutError):
        # requests raises ConnectionError for a read timeout under a Retry: it said "is it running?"
        sent = (
            "; the job may have been stored: check `jobqueue jobs` before submitting again"
            if _WAITING.sending and not _WAITING.job_id
            else ""
        )
        return (
            f"the server at {url} accepted the connection but did not answer in time: if it is the API "
            f"(the one that answers /healthz), it is stuck or overloaded; try again later, else fix {source}{sent}"
        )
    if isinstance(reason, ProtocolError) and parts.scheme == "http":
        tls = url.replace("http://", "https://", 1)
        return (
            f"the server at {url} closed the connection without an answer: if it serves TLS, try "
            f"{give}{tls}; else it may be restarting: try again later"
        )
    why = getattr(getattr(reason, "__cause__", None), "strerror", None)  # "Connection refused"
    return (
        f"cannot reach the API at {url} ({why.lower() if why else type(exc).__name__}); is it running (make up)? "
        "Point --url or JOBQUEUE_URL at it"
    )


def _cause(exc: BaseException) -> object:
    """The urllib3 reason inside requests' exception (``ConnectionError(MaxRetryError(reason=...))``)."""
    reason = exc.args[0] if exc.args else None
    return getattr(reason, "reason", reason)


def _check_url(args: argparse.Namespace) -> None:
    """The URL the client will use (as Client picks it), checked before anything is sent."""
    if args.url is not None and not args.url.strip():  # --url "$API" with API unset used the default silently
        raise UsageError(
            f"--url is empty (an unset shell variable?): give the API's address, e.g. {DEFAULT_URL}, "
            "or leave --url out to use $JOBQUEUE_URL or that default"
        )
    if args.url:
        check_url(args.url, "--url")
    elif os.environ.get("JOBQUEUE_URL", "").strip():
        check_url(os.environ["JOBQUEUE_URL"], "JOBQUEUE_URL")
    elif "JOBQUEUE_URL" in os.environ:  # export JOBQUEUE_URL=$API with API unset: the default, silently
        raise UsageError(
            f"JOBQUEUE_URL is set but empty (made from an unset shell variable?): give the API's address, "
            f"e.g. {DEFAULT_URL}, or unset JOBQUEUE_URL to use that default"
        )


def _check_ca_bundle(args: argparse.Namespace) -> None:
    """The CA bundle requests will read for an https:// API (REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE),
    checked before anything is sent: a path that is not there was requests' OSError, a traceback
    (exit 1)."""
    if urlsplit(_url(args)).scheme.lower() != "https":
        return
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        where = os.environ.get(name)
        if where:
            if not os.path.exists(where):
                raise UsageError(
                    f"{name} {where!r} does not exist: give the path of the CA bundle (a PEM file or a "
                    f"folder of them) that signed the API's certificate, or unset {name}"
                )
            return


def _check_job_ids(args: argparse.Namespace) -> None:
    """An empty job id (``jobqueue status "$JOB"`` with JOB unset) asked for ``/status/``: "404 no such
    route", and ``cancel`` named the route ``/jobs`` as if the id were a typo in it."""
    given = getattr(args, "job_id", None)
    for job_id in given if isinstance(given, list) else [given] if given is not None else []:
        if not job_id.strip():
            raise UsageError(
                f"the job id is empty{' (an unset shell variable?)' if not job_id else ''}: give the id "
                "`jobqueue submit` printed (`jobqueue jobs` lists them)"
            )


def _check_token(args: argparse.Namespace) -> None:
    """The token the client will send (as Client picks it), checked before anything is sent."""
    if args.token:
        check_token(args.token, "--token")
    elif os.environ.get("JOBQUEUE_TOKEN"):
        check_token(os.environ["JOBQUEUE_TOKEN"], "JOBQUEUE_TOKEN")


def _error(message: str, code: int) -> int:
    print(f"jobqueue: {message}", file=sys.stderr)
    return code
