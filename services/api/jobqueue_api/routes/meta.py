"""What a curl user reads first: ``/`` and ``/help`` (usage with copy-paste examples),
``/operations`` (the catalogue) and ``/openapi.json`` (the machine-readable spec)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request


from ..auth import tokens_required
from ..guards import parse_allowed_hosts, public_base
from ..state import current
from .health import read_queue

bp = Blueprint("meta", __name__)

ROUTES = [
    ("POST", "/submit", 'submit a job: {"operation": ..., "params": {...}} -> 202 {job_id}'),
    ("POST", "/submit?wait=30", "submit and wait in one request: 200 with the finished job, else 202 + Location"),
    ("POST", "/jobs", "same as /submit, with a Location header"),
    ("GET", "/status/<job_id>?wait=30", "a job's status and result; ?wait= long-polls until it finishes"),
    ("GET", "/jobs/<job_id>?wait=30", "same as /status/<job_id>"),
    ("GET", "/jobs?status=complete&operation=...&limit=20&offset=0", "recent jobs, newest first"),
    ("DELETE", "/jobs/<job_id>", "cancel a queued job, or delete a finished one"),
    ("GET", "/jobs/<job_id>/result?wait=30", "the result body: JSON, or a PNG for plots"),
    ("GET", "/download/<job_id>", "same as /jobs/<job_id>/result"),
    ("GET", "/results/<job_id>, /jobs/<job_id>/results", "same as /jobs/<job_id>/result (COE 332 names)"),
    ("GET", "/operations", "operations, their parameters and example submissions"),
    ("GET", "/analysis/<operation>?key=value", "run an operation synchronously (quick checks)"),
    ("GET", "/incident_count_by_date?date=YYYY-MM-DD", "the tutorial's synchronous date count"),
    ("GET", "/data", "the loaded dataset: identity, format, rows, date range"),
    ("GET", "/healthz, /readyz, /metrics, /openapi.json", "probes, Prometheus metrics, OpenAPI 3.1 spec"),
    ("GET", "/healthz?detail=1", "the queue: jobs waiting, the oldest one's age, live workers, stalled or not"),
    ("GET", "/queue", "queue depth, in progress, delayed retries, workers, last 15 minutes"),
    ("GET", "/ui/", "the jobs web page: overview, jobs, submit form, results, data (in a browser)"),
    ("GET", "/docs", "interactive API docs (Swagger UI) in a browser"),
]


def _examples(base: str) -> list[str]:
    state = current()
    # named tokens alone (API_TOKENS) want a token too: the lines said none and answered 401
    auth = ' -H "Authorization: Bearer $JOBQUEUE_TOKEN"' if tokens_required() else ""
    out = []
    for op in state.catalogue:
        body = json.dumps(op.example_submission())
        out.append(f"curl -s{auth} -X POST {base}/submit -H 'Content-Type: application/json' -d '{body}'")
    if out:  # the first one again, submitted and waited for in one request
        out.append(out[0].replace(f"{base}/submit", f"'{base}/submit?wait=30'", 1))
    out += [
        f"curl -s{auth} '{base}/status/JOB_ID?wait=30'",
        f"curl -s{auth} -o result.png '{base}/download/JOB_ID'   # plot operations",
        f"curl -s {base}/operations",
    ]
    return out


def _routes(metrics_port: int) -> list[tuple[str, str, str]]:
    """ROUTES, with /metrics named on its own port when API_METRICS_PORT moves it off this one."""
    if not metrics_port:
        return ROUTES
    moved = [(m, p.replace(", /metrics", ""), w.replace("Prometheus metrics, ", "")) for m, p, w in ROUTES]
    return [*moved, ("GET", f":{metrics_port}/metrics", "Prometheus metrics (their own port; this one answers 404)")]


def _usage() -> dict:
    state = current()
    base = public_base(parse_allowed_hosts(state.settings.allowed_hosts), state.settings.port)
    return {
        "service": "atx-jobqueue",
        "description": "Queue analyses of the City of Austin traffic incident data; poll or long-poll for results.",
        "routes": [{"method": m, "path": p, "what": w} for m, p, w in _routes(state.settings.api_metrics_port)],
        "operations": current().catalogue.names(),
        "examples": _examples(base),
        "auth": "job and analysis routes need 'Authorization: Bearer <token>' (yours: put it in $JOBQUEUE_TOKEN, which the jobqueue CLI reads too)"
        if tokens_required()
        else "no token needed",
        "docs": f"{base}/openapi.json",
        **_queue(),
        "browser": {"jobs_page": f"{base}/ui/", "api_docs": f"{base}/docs"},
    }


def _queue() -> dict:
    """``queue`` (None when unreadable), and ``queue_error`` when Redis's ACL refused the reads."""
    read = read_queue()  # a hung Redis: said within 1 s
    return {k: v for k, v in read.items() if k != "redis"}


def _queue_text(q: dict | None, error: str | None = None) -> list[str]:
    if q is None and error:
        return [f"Queue: unknown: {error}"]
    if q is None:
        return ["Queue: Redis unreachable (GET /readyz; the API's logs say why)"]
    line = (
        f"Queue: {q['waiting']} waiting in {q['queue']} (Redis db {q['queue_db']}), "
        f"{q['in_progress']} in progress, {q['workers_alive']} worker(s) alive"
    )
    if q["waiting"]:
        line += f", oldest waiting {q['oldest_waiting_seconds']:.0f} s"
    return [line] + ([f"WARNING: the queue is stalled: {q['stalled_reason']}"] if q["stalled"] else [])


def _usage_text(doc: dict) -> str:
    lines = [
        f"{doc['service']}: {doc['description']}",
        "",
        *_queue_text(doc["queue"], doc.get("queue_error")),
        "",
        "Routes:",
    ]
    width = max(len(r["method"]) for r in doc["routes"])
    for r in doc["routes"]:
        lines.append(f"  {r['method']:<{width}}  {r['path']}")
        lines.append(f"  {'':<{width}}    {r['what']}")
    lines += [
        "",
        f"Operations: {', '.join(doc['operations']) or '(none)'}",
        f"Auth: {doc['auth']}",
        "",
        "Examples (replace JOB_ID with the job_id from the submit response):",
    ]
    lines += [f"  {e}" for e in doc["examples"]]
    lines += [
        "",
        f"Full reference: {doc['docs']}",
        f"In a browser: {doc['browser']['jobs_page']} (jobs web page), "
        f"{doc['browser']['api_docs']} (interactive API docs)",
        "",
    ]
    return "\n".join(lines)


@bp.get("/")
@bp.get("/help")
def usage():
    doc = _usage()
    wants_json = request.args.get("format") == "json" or (
        request.accept_mimetypes.best_match(["text/plain", "application/json"]) == "application/json"
        and "*/*" not in request.headers.get("Accept", "*/*")
    )
    if wants_json:
        return jsonify(doc)
    return Response(_usage_text(doc), mimetype="text/plain")


@bp.get("/operations")
def operations():
    ops = [op.describe() for op in current().catalogue]
    return jsonify({"operations": ops, "count": len(ops)})


@bp.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions["jobqueue_openapi"])
