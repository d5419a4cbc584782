"""``jobqueue jobs``, ``info``, ``watch`` and ``cancel``: the queue from a terminal, like ``rq info``.

Each prints a table (or a status line) for people when stdout is a terminal and JSON when it is
not; ``--json`` asks for JSON anywhere, ``--format table`` for the table anywhere. They talk to the
API only (``--url``/``$JOBQUEUE_URL``), never to Redis, so they work through a port-forward.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import requests

from . import cliargs
from .client import FINAL, NOT_JSON, ApiError, Client, Pacer, ride_out
from .client_cli import api_options, client_for, command_start

SPINNER = "|/-\\"


def add_commands(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False, parents=[api_options()])
    cliargs.add_format_options(common)

    p = sub.add_parser(
        "jobs",
        parents=[common],
        help="list recent jobs (a table)",
        description="Recent jobs, newest first. Example: jobqueue jobs --status failed",
    )
    p.add_argument(
        "--status",
        choices=("submitted", "in-progress", "complete", "failed", "cancelled"),
        help="only jobs in this state",
    )
    p.add_argument("--operation", help="only jobs of this operation (as `jobqueue operations` names it)")
    p.add_argument("--limit", type=cliargs.limit, default=20, help="how many (1-100, default 20)")
    p.set_defaults(client_handler=cmd_jobs)

    p = sub.add_parser("info", parents=[common], help="the queue and its workers (like rq info)")
    p.set_defaults(client_handler=cmd_info)

    p = sub.add_parser(
        "watch",
        parents=[common],
        help="follow a job live until it finishes",
        description="Show a job's status as it changes; exits 0 when it completes, 1 if it fails or is cancelled.",
    )
    p.add_argument("job_id", help="the id submit printed")
    p.add_argument("--timeout", type=cliargs.seconds, default=None, help="give up after this many seconds")
    p.set_defaults(client_handler=cmd_watch)

    p = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel a queued job (or delete a finished one)",
        description="Cancel each job given (an id given twice once). An id the API refuses is named on "
        "stderr and the others are still cancelled; exit 2 if any was refused.",
    )
    p.add_argument("job_id", nargs="+", help="one or more ids submit printed")
    p.set_defaults(client_handler=cmd_cancel)


# --- output helpers -------------------------------------------------------------------------------


def wants_table(args: argparse.Namespace, stream=None) -> bool:
    if args.format != "auto":
        return args.format == "table"
    return (stream or sys.stdout).isatty()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain aligned columns (no colours, no box drawing): readable in any terminal and in a log."""
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _short(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _duration(job: dict[str, Any], now: float) -> str:
    if not job.get("started_at"):
        return "-"
    return age((job.get("finished_at") or now) - job["started_at"])


def _client(args: argparse.Namespace) -> Client:
    return client_for(args)


# --- commands ----------------------------------------------------------------------------------


def cmd_jobs(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("status", args.status), ("operation", args.operation)) if v}
    page = _client(args)._request("GET", "/jobs", params={**params, "limit": args.limit}).json()
    if not wants_table(args):
        print(json.dumps(page, indent=2))
        return 0
    now = time.time()
    rows: list[tuple[Any, ...]] = [
        (
            j["job_id"][:8],
            j["status"],
            j["operation"],
            _short(j.get("params") or {}, 32),
            age(now - j["submitted_at"]) + " ago",
            _duration(j, now),
            j.get("attempts", 0),
            j.get("worker") or "-",
        )
        for j in page["jobs"]
    ]
    header = ["id", "status", "operation", "params", "submitted", "took", "tries", "worker"]
    if any("owner" in j for j in page["jobs"]):  # named tokens: the admin sees whose each job is
        header.insert(1, "user")
        rows = [(row[0], j.get("owner") or "-", *row[1:]) for row, j in zip(rows, page["jobs"], strict=True)]
    if rows:
        print(table(header, rows))
    else:
        print("no jobs" + (" match" if params else ""))
    if page.get("next_cursor"):
        # the CLI has no --cursor: the hint said "page with GET /jobs?cursor=...", a page it cannot ask for
        print("(more: raise --limit, up to 100, or narrow with --status or --operation)", file=sys.stderr)
    return 0


def info_text(q: dict[str, Any]) -> str:
    oldest = "" if q["oldest_waiting_seconds"] is None else f" (oldest {age(q['oldest_waiting_seconds'])})"
    lines = [
        f"queue {q['queue']}: {q['depth']} waiting{oldest}, {q['in_progress']} in progress, "
        f"{q['delayed_retries']} waiting to retry",
        f"workers: {q['workers_alive']} alive",
    ]
    if q["workers"]:
        rows = [
            (
                w["id"],
                "alive" if w["alive"] else "lost",
                age(w["heartbeat_age_seconds"]) + " ago",
                w["job_id"][:8] if w["job_id"] else ("busy" if w.get("busy") else "idle"),
            )
            for w in q["workers"]
        ]
        lines += ["  " + line for line in table(["worker", "state", "heartbeat", "running"], rows).splitlines()]
    recent = q["recent"]
    minutes = recent.get("window_seconds", 900) // 60
    lines.append(
        f"last {minutes} min: {sum(recent['complete'])} complete, {sum(recent['failed'])} failed"
        + (" (from the most recent jobs)" if recent.get("sampled") else "")
    )
    if q["stalled"]:  # an API before stalled_reason said stalled only when no worker was alive
        lines.append(f"WARNING: the queue is stalled: {q.get('stalled_reason') or 'jobs wait and no worker is alive'}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    q = _client(args).queue()
    print(info_text(q) if wants_table(args) else json.dumps(q, indent=2))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    client = _client(args)
    human = wants_table(args)
    live = human and sys.stderr.isatty()
    spin = itertools.cycle(SPINNER)
    start = command_start(args)  # --timeout counts from the command's start, as submit's does
    last_status = None
    pacer = Pacer()
    outage_since: float | None = None
    while True:  # an API that answers 503 as it starts is ridden out too (no answer at all: a wrong URL)
        try:
            job = client.status(args.job_id)
            break
        except ApiError as exc:
            outage_since = ride_out(exc, args.job_id, outage_since, start, args.timeout)
            if outage_since is None:
                # no answer named the job yet: it may not exist (a typo), so the message must not say
                # "job <id> is stored and carries on ... do not submit it again", as it did
                exc.job_id = None  # type: ignore[attr-defined]
                raise
    outage_since = None
    while True:
        elapsed = time.monotonic() - start
        if job["status"] != last_status:
            if live:
                sys.stderr.write("\r\033[K")
            if human:
                print(
                    f"{time.strftime('%H:%M:%S')}  {job['job_id'][:8]}  {job['status']}"
                    + (f"  (worker {job['worker']})" if job.get("worker") and job["status"] == "in-progress" else ""),
                    flush=True,
                )
            last_status = job["status"]
        if job["status"] in FINAL:
            break
        if args.timeout is not None and elapsed >= args.timeout:
            if live:
                sys.stderr.write("\r\033[K")
            raise TimeoutError(f"job {args.job_id} still {job['status']} after {args.timeout:g}s")
        if live:
            sys.stderr.write(f"\r{next(spin)} {job['status']} for {elapsed:5.1f}s")
            sys.stderr.flush()
        # short long polls on a terminal keep the spinner moving; one request per 20 s otherwise
        step = 1.0 if live else 20.0
        if args.timeout is not None:
            step = max(0.1, min(step, args.timeout - elapsed))
        try:
            job = pacer.status(client, args.job_id, step, None if args.timeout is None else args.timeout - elapsed)
            outage_since = None
        except (ApiError, requests.ConnectionError, requests.Timeout) as exc:  # rode out, as submit --wait
            outage_since = ride_out(exc, args.job_id, outage_since, start, args.timeout)
            if outage_since is None:
                raise
    if live:
        sys.stderr.write("\r\033[K")
    if human:
        took = ""
        if job.get("started_at") and job.get("finished_at"):
            took = f" in {age(job['finished_at'] - job['started_at'])}"
        print(f"{job['status']}{took}" + (f": {job['error']}" if job.get("error") else ""))
        if job["status"] == "complete":
            url = client.url + job.get("result_url", f"/jobs/{job['job_id']}/result")
            print(
                f"result: curl -s -o plot.png {url}"
                if job.get("result_type") == "image/png"
                else f"result: curl -s {url}"
            )
    else:
        print(json.dumps(job, indent=2))
    return 0 if job["status"] == "complete" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel each id once (an id given twice is one cancel). An id the API refuses (unknown,
    running, malformed) is named and the others are still cancelled; what was done is printed
    before any error ends the command, so an exit 2 or 3 never hides a cancel that happened."""
    client = _client(args)
    ids = list(dict.fromkeys(args.job_id))
    answers: dict[str, dict[str, Any]] = {}  # each id's answer, a refusal as the API's error document
    refused: list[tuple[str, ApiError]] = []
    stopped = True
    try:
        for job_id in ids:
            try:
                answers[job_id] = client.cancel(job_id)
            except ApiError as exc:
                if exc.status >= 500 or exc.status in (401, 403, 429) or exc.code == NOT_JSON:  # so would every id
                    raise
                refused.append((job_id, exc))
                answers[job_id] = {"job_id": job_id, "error": exc.code, "message": exc.message}
        stopped = False
    finally:
        _print_cancelled(args, ids, answers, stopped)
    if wants_table(args) or len(ids) == 1:  # else each refusal is in the JSON document: not said twice
        for job_id, error in refused:
            print(f"jobqueue: {job_id}: {error}", file=sys.stderr)
    return cliargs.Exit.USAGE if refused else cliargs.Exit.OK


NOT_SENT = "not sent: the command stopped at an earlier error (on stderr)"


def _print_cancelled(
    args: argparse.Namespace, ids: list[str], answers: dict[str, dict[str, Any]], stopped: bool
) -> None:
    """The table's lines, or one JSON document: for several ids a list with an entry per id, a
    refused one as ``{"job_id", "error", "message"}`` (``cancel x y --json`` printed ``[]`` beside
    the errors on stderr, a list that said nothing had been asked), an id not sent because the
    command stopped early as ``"error": "not_sent"``; nothing at all when nothing was done."""
    done = [answers[i] for i in ids if i in answers and "error" not in answers[i]]
    if wants_table(args):
        for doc in done:
            print(f"{doc['job_id']}: {'cancelled' if doc.get('cancelled') else 'deleted'}")
    elif len(ids) > 1 and (answers if not stopped else done):
        missing = {"error": "not_sent", "message": NOT_SENT}
        print(json.dumps([answers.get(i) or {"job_id": i, **missing} for i in ids], indent=2))
    elif len(ids) == 1 and done:
        print(json.dumps(done[0], indent=2))
