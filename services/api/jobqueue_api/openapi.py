"""The OpenAPI 3.1 document of the API, generated from the operation catalogue.

Request bodies and analysis query parameters come from each operation's ``Param`` declarations
(``Operation.params_schema``), the same declarations ``Operation.validate`` enforces, so the spec
and the validation cannot drift. ``tests/api/test_openapi.py`` holds the paths here to Flask's
url_map, route by route and method by method.
"""

from __future__ import annotations

from typing import Any

from atx_analysis.registry import Registry
from jobqueue.jobs import CURSOR_RE, JOB_ID_RE, JobStatus
from jobqueue.settings import Settings

from .routes.jobs import MAX_OFFSET, MAX_PAGE_SIZE

# A page cursor is "<score>_<job id>" (JobStore._encode_cursor): the spec says so, so a client
# (or a fuzzer) that sends any other string is told in advance that it gets a 400.
CURSOR_PATTERN = CURSOR_RE.pattern

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


JOB_ID_PARAM = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_RE.pattern},
    "description": "job id (UUID4)",
}


def _wait_param(cap: float) -> dict[str, Any]:
    return {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "minimum": 0},
        "description": f"long poll: answer as soon as the job finishes, or after this many seconds (capped at {cap:g})",
    }


def _submit_wait_params(cap: float) -> list[dict[str, Any]]:
    return [
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "schema": {"type": "number", "minimum": 0},
            "description": f"submit and wait: answer 200 with the job once final, if that is within this many "
            f"seconds (capped at {cap:g}), else 202 with its current document; without it, the "
            f"tutorial's 202 {{job_id, status}}",
        },
        {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "RFC 7240: `wait=N` (whole seconds) asks for the same as ?wait=N (which wins when "
            "both are given); the answer then has Preference-Applied. Other preferences, "
            "and a wait value that is not a whole number, are ignored",
        },
    ]


IDEMPOTENCY_KEY_PARAM: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 257},
    # no "example": Swagger UI's Try it out fills a parameter with its example, so every submit
    # from /docs would carry that one key (the second, other request a 422; everyone's, without
    # named tokens, one scope)
    "description": "makes the submit safe to send again (IETF draft-ietf-httpapi-idempotency-key-header): "
    '1-255 visible ASCII characters, bare or as a quoted string, best a new UUID per job (e.g. "8e03978e-40d5-'
    '43e8-bc93-6894a57f9324"); leave it empty to send none. The same request '
    "sent again with the same key (within 24 h, by the same token's user) answers the first's job with "
    "Idempotent-Replayed: true instead of storing another; a different request under a used key is a 422",
}
KEY_HEADERS: dict[str, Any] = {
    "Idempotency-Key": {"description": "the request's key, echoed: the key was honoured", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "true: the key named an earlier job of the same request, which this answers",
        "schema": {"type": "string", "const": "true"},
    },
}


def params_schema(op) -> dict[str, Any]:
    """The operation's params schema, as the registry declares it (nullable optional parameters
    included: validation and spec come from that one declaration)."""
    return op.params_schema()


# gunicorn refuses a request line over 4,094 bytes before the app sees it (limit_request_line), in
# the JSON error shape (errors.json_errors): documented so clients know the limit exists.
URI_TOO_LONG = _error(
    "`uri_too_long`: request line (method, path and query) over 4,094 bytes, refused by the HTTP server "
    "before the application"
)


def _analysis_paths(catalogue: Registry, secured: list, responses: dict[str, Any]) -> dict[str, Any]:
    """One concrete path per operation (``/analysis/top_locations``) with its own query parameters,
    beside the generic ``/analysis/{operation}`` rule they are instances of."""
    paths = {}
    for op in catalogue:
        params = []
        example = op.example_submission()["params"]
        for p in op.params:
            schema = {k: v for k, v in p.json_schema().items() if k != "description"}
            param = {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": schema,
                "description": p.description,
            }
            if p.name in example:  # "Try it out" starts from it (without, a required date starts empty)
                param["example"] = example[p.name]
            params.append(param)
        paths[f"/analysis/{op.name}"] = {
            "get": {
                "operationId": f"analysis_{op.name}",
                "summary": op.description.split(". ")[0][:120],
                "tags": ["analysis"],
                "security": secured,
                "parameters": params,
                "responses": responses,
            }
        }
    return paths


def _submission_examples(catalogue: Registry) -> dict[str, Any]:
    """Each operation's example submission, the tutorial's date count first: Swagger UI's "Try it
    out" starts from the first example, and without any it made a body up from the schema (a date
    like "1764-") that the API refused."""
    ops = sorted(catalogue, key=lambda op: op.name != "incident_count_by_date")
    return {op.name: {"summary": op.description.split(". ")[0][:120], "value": op.example_submission()} for op in ops}


def _components(catalogue: Registry) -> dict[str, Any]:
    submissions = []
    for op in catalogue:
        submissions.append(
            {
                "title": op.name,
                "type": "object",
                "additionalProperties": False,
                "required": ["operation"] + (["params"] if any(p.required for p in op.params) else []),
                "properties": {"operation": {"const": op.name}, "params": params_schema(op)},
            }
        )
    status_enum = [s.value for s in JobStatus]
    return {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "param": {"type": "string"},
                    "job_id": {"type": "string", "description": "the job concerned (404, 422, 504)"},
                    "operations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "every known operation (unknown_operation, missing_operation, invalid_operation)",
                    },
                    "did_you_mean": {
                        "type": "string",
                        "description": "the known operation closest to an unknown one, when one is close "
                        "(unknown_operation; absent otherwise)",
                    },
                },
            },
            "Submission": {"oneOf": submissions} if submissions else {"type": "object"},
            "Accepted": {
                "type": "object",
                "required": ["job_id", "status"],
                "properties": {
                    "job_id": {"type": "string"},
                    "status": {"const": "submitted"},
                    "status_url": {"type": "string"},
                },
            },
            "Job": {
                "type": "object",
                "required": ["job_id", "status", "operation", "params"],
                "properties": {
                    "job_id": {"type": "string"},
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": status_enum},
                    "operation": {"type": "string"},
                    "params": {"type": "object"},
                    "input": {"type": "object"},
                    "submitted_at": {"type": "number"},
                    "started_at": {"type": ["number", "null"]},
                    "finished_at": {"type": ["number", "null"]},
                    "attempts": {"type": "integer"},
                    "worker": {"type": ["string", "null"]},
                    "error": {"type": ["string", "null"]},
                    "result": {},
                    "result_type": {"type": "string"},
                    "result_url": {"type": "string"},
                    "dataset": {"type": ["string", "null"]},
                    "cached": {"type": "boolean"},
                    "cached_from": {"type": ["string", "null"]},
                },
            },
            "Queue": {
                "type": "object",
                "required": [
                    "queue",
                    "depth",
                    "in_progress",
                    "delayed_retries",
                    "oldest_waiting_seconds",
                    "workers_alive",
                    "workers",
                    "stalled",
                    "recent",
                ],
                "properties": {
                    "queue": {"type": "string"},
                    "depth": {"type": "integer"},
                    "depth_by_lane": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "in_progress": {"type": "integer"},
                    "delayed_retries": {"type": "integer"},
                    "oldest_waiting_seconds": {"type": ["number", "null"]},
                    "workers_alive": {"type": "integer"},
                    "stalled": {"type": "boolean"},
                    "stalled_reason": {"type": ["string", "null"]},
                    "lease_seconds": {"type": "number"},
                    "time": {"type": "number"},
                    "workers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "heartbeat_age_seconds", "alive", "job_id", "busy"],
                            "properties": {
                                "id": {"type": "string"},
                                "heartbeat_age_seconds": {"type": "number"},
                                "alive": {"type": "boolean"},
                                "job_id": {
                                    "type": ["string", "null"],
                                    "description": "the job the worker runs; null when idle, and with named "
                                    "tokens when it is another user's job (busy is then true)",
                                },
                                "busy": {"type": "boolean", "description": "the worker runs a job"},
                            },
                        },
                    },
                    "recent": {
                        "type": "object",
                        "required": ["complete", "failed", "start", "bucket_seconds"],
                        "properties": {
                            "window_seconds": {"type": "integer"},
                            "bucket_seconds": {"type": "integer"},
                            "start": {"type": "number"},
                            "sampled": {"type": "boolean"},
                            "complete": {"type": "array", "items": {"type": "integer"}},
                            "failed": {"type": "array", "items": {"type": "integer"}},
                        },
                    },
                },
            },
            "Catalogue": {
                "type": "object",
                "required": ["operations", "count"],
                "properties": {
                    "operations": {"type": "array", "items": _ref("Operation")},
                    "count": {"type": "integer"},
                },
            },
            "Operation": {
                "type": "object",
                "required": ["name", "description", "result", "result_keys", "params", "example"],
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "result": {
                        "type": "string",
                        "enum": ["application/json", "image/png"],
                        "description": "what the job's result will be: image/png for plots (the finished job "
                        "shows result_type image/png and result null; GET /jobs/{job_id}/result is the PNG)",
                    },
                    "result_keys": {"type": "array", "items": {"type": "string"}},
                    "params": {"type": "array", "items": {"type": "object", "required": ["name", "type", "required"]}},
                    "example": _ref("Submission"),
                },
            },
            "JobList": {
                "type": "object",
                "required": ["jobs", "count", "next_cursor"],
                "properties": {
                    "jobs": {"type": "array", "items": _ref("Job")},
                    "count": {"type": "integer"},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "next_offset": {"type": ["integer", "null"]},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "only when the server sets API_TOKEN or API_TOKENS: your own token (a student's named one, or the admin's)",
            }
        },
    }


TOO_MANY_GUESSES = (
    "too_many_token_failures: this client (its address) sent TOKEN_FAILURE_LIMIT wrong tokens within "
    "TOKEN_FAILURE_WINDOW_SECONDS; every token from it, the right one included, is refused until Retry-After"
)


def _add_guess_limit(responses: dict[str, Any]) -> None:
    """The 429 of a client whose wrong-token budget is spent (guesses.py), beside a route's own."""
    own = responses.get("429")
    responses["429"] = _error(TOO_MANY_GUESSES if own is None else f"{own['description']}; or {TOO_MANY_GUESSES}")


def build_spec(catalogue: Registry, settings: Settings, version: str) -> dict[str, Any]:
    wait = _wait_param(settings.max_wait_seconds)
    secured: list[dict[str, list[str]]] = [{}, {"bearer": []}]  # open unless API_TOKEN is set
    job_errors = {
        "400": _error("malformed job id or query parameter"),
        "401": _error("missing or wrong token"),
        "404": _error("no such job"),
        "503": _error("Redis unreachable"),
    }
    location = {
        "Location": {"description": "/status/<job_id>: where the job can be polled", "schema": {"type": "string"}}
    }
    submit_op: dict[str, Any] = {
        "security": secured,
        "parameters": [IDEMPOTENCY_KEY_PARAM],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": _ref("Submission"), "examples": _submission_examples(catalogue)}},
        },
        "responses": {
            "202": {**_json(_ref("Accepted"), "accepted and queued"), "headers": KEY_HEADERS},
            "400": _error("malformed JSON, not an object, missing/unknown operation, bad parameter or Idempotency-Key"),
            "422": _error(
                "idempotency_key_reused: the Idempotency-Key was used for a different request; nothing stored"
            ),
            "401": _error("missing or wrong token"),
            "408": _error("the body did not arrive within CLIENT_TIMEOUT_SECONDS"),
            "413": _error("body larger than MAX_BODY_BYTES"),
            "415": _error(
                "the body is not Content-Type: application/json (or an application/...+json type), "
                "or has a Content-Encoding other than identity (send it uncompressed)"
            ),
            "429": _error(
                "this client's SUBMIT_RATE_LIMIT per SUBMIT_RATE_WINDOW_SECONDS (a sliding window) is used up; "
                "Retry-After says when a submit is admitted again. too_many_jobs_held: the client holds "
                "MAX_JOBS_PER_CLIENT jobs in the job store; delete finished ones or wait for them to expire"
            ),
            "503": _error(
                "Redis unreachable, or refusing writes: nothing was stored; submit again after Retry-After. "
                "data_unavailable: the data file is refused (or a changed one is being loaded); nothing runs until it is fixed"
            ),
            "504": {
                **_error(
                    "Redis did not answer in time after the job was sent to it: "
                    "it may be stored (error redis_timeout, no Retry-After). "
                    "job_id and Location name it: check GET /status/<job_id> "
                    "before submitting again (404: not stored), or, when the submit carried an "
                    "Idempotency-Key (echoed here), send it again with the same key"
                ),
                "headers": {**location, "Idempotency-Key": KEY_HEADERS["Idempotency-Key"]},
            },
        },
    }
    submit_and_wait = {
        **submit_op,
        "parameters": [*_submit_wait_params(settings.max_wait_seconds), IDEMPOTENCY_KEY_PARAM],
        "responses": {
            **submit_op["responses"],
            "200": {
                **_json(
                    _ref("Job"),
                    "with ?wait= (or Prefer: wait): the job reached a final status within "
                    "the wait; the document GET /status/<job_id> shows",
                ),
                "headers": {**location, **KEY_HEADERS},
            },
            "202": {
                **_json(
                    {"anyOf": [_ref("Accepted"), _ref("Job")]},
                    "accepted and queued: the tutorial's {job_id, status}; with ?wait=, the job's current "
                    "document (not final within the wait) and a Location header",
                ),
                "headers": {**location, **KEY_HEADERS},
            },
            "400": _error(
                "malformed JSON, not an object, missing/unknown operation, bad parameter, bad wait or bad Idempotency-Key"
            ),
        },
    }
    # POST /jobs waits the same way; its Location (with or without a wait) is /jobs/<job_id>
    jobs_location = {"Location": {**location["Location"], "description": "/jobs/<job_id>: where the job can be polled"}}
    create_and_wait = {
        **submit_and_wait,
        "responses": {
            **submit_and_wait["responses"],
            "200": {
                **submit_and_wait["responses"]["200"],
                "description": "with ?wait= (or Prefer: wait): the job reached a final status within "
                "the wait; the document GET /jobs/<job_id> shows",
                "headers": {**jobs_location, **KEY_HEADERS},
            },
            "202": {
                **_json(
                    {"anyOf": [_ref("Accepted"), _ref("Job")]},
                    "accepted and queued: {job_id, status, status_url}; with ?wait=, the job's current "
                    "document (not final within the wait)",
                ),
                "headers": {**jobs_location, **KEY_HEADERS},
            },
        },
    }
    result_responses = {
        "200": {
            "description": "the result: JSON, or a PNG for plot operations",
            "content": {JSON: {"schema": {}}, "image/png": {"schema": {"type": "string", "contentEncoding": "binary"}}},
        },
        "409": _error("the job failed, was cancelled or has not finished"),
        "410": _error("the stored result expired"),
        **job_errors,
    }
    analysis_responses = {
        "200": {
            "description": "the operation's result",
            "content": {
                JSON: {"schema": {"type": "object"}},
                "image/png": {"schema": {"type": "string", "contentEncoding": "binary"}},
            },
        },
        "400": _error("bad parameter"),
        "401": _error("missing or wrong token"),
        "404": _error("unknown operation"),
        "503": _error("dataset not loaded, or (plots) SYNC_PLOTS_PER_PROCESS renders already running; see Retry-After"),
    }
    date_param = []
    if "incident_count_by_date" in catalogue:
        date_p = {p.name: p for p in catalogue.get("incident_count_by_date").params}.get("date")
        if date_p is not None:
            date_param = [{"name": "date", "in": "query", "required": date_p.required, "schema": date_p.json_schema()}]
    text_or_json = {"text/plain": {"schema": {"type": "string"}}, JSON: {"schema": {"type": "object"}}}

    paths: dict[str, Any] = {
        "/submit": {
            "post": {
                "operationId": "submit",
                "summary": "Submit a job (the tutorial's route)",
                "tags": ["jobs"],
                **submit_and_wait,
            }
        },
        "/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Submit a job; Location header points at it",
                "tags": ["jobs"],
                **create_and_wait,
            },
            "get": {
                "operationId": "listJobs",
                "summary": "Recent jobs, newest first",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in JobStatus]},
                    },
                    {"name": "operation", "in": "query", "schema": {"type": "string", "enum": catalogue.names()}},
                    {
                        "name": "owner",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1},
                        "description": "only the jobs of this named token's user (API_TOKENS): the admin's view of "
                        "one user; a named token sees only its own jobs anyway (another name: none)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                        "description": "the previous page's next_cursor (then offset is ignored)",
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                        "description": "where to start, the previous page's next_offset: a position among the "
                        "owner's jobs with owner, else the operation's with operation, else the status's "
                        "(docs/api.md says what paging by it guarantees)",
                    },
                ],
                "responses": {
                    "200": _json(_ref("JobList"), "a page of jobs"),
                    "400": _error("bad filter or page"),
                    "401": _error("missing or wrong token"),
                    "503": _error("Redis unreachable"),
                },
            },
        },
        "/status/{job_id}": {
            "get": {
                "operationId": "status",
                "summary": "A job's status and result (the tutorial's route)",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": {"200": _json(_ref("Job"), "the job"), **job_errors},
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's status and result",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": {"200": _json(_ref("Job"), "the job"), **job_errors},
            },
            "delete": {
                "operationId": "deleteJob",
                "summary": "Cancel a queued job or delete a finished one",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM],
                "responses": {
                    "200": _json({"type": "object"}, "cancelled or deleted"),
                    "409": _error("the job is running"),
                    **job_errors,
                },
            },
        },
        "/jobs/{job_id}/result": {
            "get": {
                "operationId": "jobResult",
                "summary": "The result body (JSON or PNG)",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": result_responses,
            }
        },
        "/download/{job_id}": {
            "get": {
                "operationId": "download",
                "summary": "Same as /jobs/{job_id}/result",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": result_responses,
            }
        },
        "/jobs/{job_id}/results": {
            "get": {
                "operationId": "jobResults",
                "summary": "Same as /jobs/{job_id}/result (the COE 332 route name)",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": result_responses,
            }
        },
        "/results/{job_id}": {
            "get": {
                "operationId": "results",
                "summary": "Same as /jobs/{job_id}/result",
                "tags": ["jobs"],
                "security": secured,
                "parameters": [JOB_ID_PARAM, wait],
                "responses": result_responses,
            }
        },
        "/analysis/{operation}": {
            "get": {
                "operationId": "analysis",
                "summary": "Run one operation synchronously on the API's dataset",
                "description": "Pass the operation's parameters as query parameters (`?n=5`); GET /operations "
                "lists each operation's parameters. Parameters the operation does not declare are a 400.",
                "tags": ["analysis"],
                "security": secured,
                "parameters": [
                    {
                        "name": "operation",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "an operation name; each has its own path below with its parameters",
                    }
                ],
                "responses": analysis_responses,
            }
        },
        "/incident_count_by_date": {
            "get": {
                "operationId": "incidentCountByDate",
                "summary": "The tutorial's synchronous date count",
                "tags": ["analysis"],
                "security": secured,
                "parameters": date_param,
                "responses": analysis_responses,
            }
        },
        "/data": {
            "get": {
                "operationId": "data",
                "summary": "Dataset identity, format, rows, date range",
                "tags": ["analysis"],
                "security": secured,
                "responses": {
                    "200": _json({"type": "object"}, "dataset information"),
                    "401": _error("missing or wrong token"),
                    "503": _error("dataset not loaded"),
                },
            }
        },
        "/queue": {
            "get": {
                "operationId": "queue",
                "summary": "The queue at a glance: depth, in progress, delayed "
                "retries, oldest waiting age, workers, last 15 minutes",
                "tags": ["jobs"],
                "security": secured,
                "responses": {
                    "200": _json(_ref("Queue"), "queue and workers now"),
                    "401": _error("missing or wrong token"),
                    "503": _error("Redis unreachable"),
                },
            }
        },
        "/operations": {
            "get": {
                "operationId": "operations",
                "summary": "Operations, parameters, examples",
                "tags": ["meta"],
                "responses": {"200": _json(_ref("Catalogue"), "the catalogue")},
            }
        },
        "/": {
            "get": {
                "operationId": "index",
                "summary": "Usage for curl users",
                "tags": ["meta"],
                "responses": {
                    "200": {"description": "usage text (JSON with Accept: application/json)", "content": text_or_json}
                },
            }
        },
        "/help": {
            "get": {
                "operationId": "help",
                "summary": "Same as /",
                "tags": ["meta"],
                "responses": {"200": {"description": "usage", "content": text_or_json}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["meta"],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "tags": ["health"],
                "responses": {"200": _json({"type": "object"}, "alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: Redis reachable, data loaded; redis_writable says whether submits are accepted",
                "tags": ["health"],
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _error("not ready; the message says why"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus exposition",
                "tags": ["health"],
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    }
    if settings.api_metrics_port:  # served on its own listener, not on the port this document describes
        del paths["/metrics"]
    paths.update(_analysis_paths(catalogue, secured, analysis_responses))
    for item in paths.values():
        for operation in item.values():
            operation["responses"].setdefault("414", URI_TOO_LONG)
            if "401" in operation["responses"]:  # a route that checks tokens: wrong ones are budgeted
                _add_guess_limit(operation["responses"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "atx-jobqueue API",
            "version": version,
            "description": "Queue analyses of the City of Austin traffic incident data. "
            "Job routes need a bearer token only when the server sets API_TOKEN or API_TOKENS (named tokens): "
            "press Authorize and give yours.",
        },
        "paths": paths,
        "components": _components(catalogue),
    }
