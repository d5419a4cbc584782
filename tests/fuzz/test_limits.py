"""Limits that hold against a real API: body size, parameter bounds, long-poll cap, page size, job id
format, literal road search, PNG size. Each over-limit request gets a JSON 4xx naming the problem,
never a 500 and never a hang.
"""

from __future__ import annotations

import struct
import time
import uuid

import pytest
import requests

from tests.chaos.checks import operations
from tests.fuzz.limits import MAX_WAIT_SECONDS


def _ops():
    """The catalogue, or nothing while the analysis package is not merged (collection must not fail)."""
    try:
        return list(operations())
    except ImportError:
        return []


def _json_error(resp: requests.Response, status: int | tuple[int, ...]) -> dict:
    allowed = (status,) if isinstance(status, int) else status
    assert resp.status_code in allowed, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers["Content-Type"]
    body = resp.json()
    assert body.get("error") and body.get("message"), body
    return body


def _submit(api, body, **kw):
    return requests.post(api.url + "/submit", timeout=10, **kw, **({"json": body} if body is not None else {}))


# --- body size --------------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused_with_413(api):
    limit = int(api.base_env().get("MAX_BODY_BYTES", "65536"))
    body = b'{"operation": "sleep", "params": {"seconds": 0}, "pad": "' + b"x" * limit + b'"}'
    resp = requests.post(api.url + "/submit", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    _json_error(resp, 413)


def test_a_chunked_body_over_the_limit_is_refused(api):
    """No Content-Length to check up front: the limit must hold while reading."""
    limit = int(api.base_env().get("MAX_BODY_BYTES", "65536"))

    def chunks():
        yield b'{"operation": "sleep", "params": {"seconds": 0}, "pad": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    resp = requests.post(api.url + "/submit", data=chunks(), headers={"Content-Type": "application/json"}, timeout=10)
    _json_error(resp, (400, 413))


@pytest.mark.parametrize(
    "body,status",
    [
        (b"", 400),
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b'"a string"', 400),
        (b"{", 400),
        (b'{"operation": 5}', (400, 404)),
        (b'{"operation": "no_such_op"}', (400, 404)),
        (b'{"operation": "sleep", "params": [1]}', 400),
        (b'{"operation": "sleep", "params": {"nope": 1}}', 400),
        (b'{"operation": "sleep", "params": {"seconds": 1e999}}', 400),
        (b'{"operation": "sleep", "params": {"seconds": ' + b"9" * 5000 + b"}}", 400),
        (b'{"operation": "sleep", "params": {"seconds": NaN}}', 400),
        (b"\xff\xfe\x00garbage", 400),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, (400, 413)),
    ],
)
def test_malformed_submissions_get_a_json_4xx(api, body, status):
    resp = requests.post(api.url + "/submit", data=body, headers={"Content-Type": "application/json"}, timeout=10)
    _json_error(resp, status)


# --- parameter bounds ---------------------------------------------------------------------------------
def _bounded_params():
    for op in _ops():
        for p in op.params:
            if p.type in {"int", "number"} and p.maximum is not None:
                yield pytest.param(op, p, id=f"{op.name}.{p.name}")


@pytest.mark.parametrize("op,param", list(_bounded_params()))
def test_every_declared_parameter_bound_holds_at_the_api(api, op, param):
    """One step past each declared maximum (e.g. top_locations n) is a 400 naming the parameter;
    the maximum itself is accepted."""
    base = dict(op.example_submission()["params"])
    over = param.maximum + 1
    resp = _submit(api, {"operation": op.name, "params": {**base, param.name: over}})
    body = _json_error(resp, 400)
    assert param.name in body["message"] or body.get("param") == param.name, body
    resp = _submit(api, {"operation": op.name, "params": {**base, param.name: param.maximum}})
    assert resp.status_code == 202, resp.text[:300]


def test_top_locations_n_is_bounded():
    """The contract names this bound explicitly: n must have a maximum (and a minimum)."""
    if not _ops():
        pytest.skip("analysis operations not merged yet")
    n = next(p for p in operations().get("top_locations").params if p.name == "n")
    assert n.maximum is not None and n.minimum is not None and n.minimum >= 1


def test_string_parameters_have_a_length_cap():
    if not _ops():
        pytest.skip("analysis operations not merged yet")
    unbounded = [
        f"{op.name}.{p.name}"
        for op in _ops()
        for p in op.params
        if p.type == "string" and p.max_length is None and not p.choices
    ]
    assert not unbounded, f"string parameters without max_length: {unbounded}"


# --- long-poll cap ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/status/{id}?wait=100000", "/jobs/{id}?wait=100000", "/jobs/{id}/result?wait=1e9"])
def test_long_poll_is_capped(api, path):
    """No workers run here, so the job stays queued: the poll must return after MAX_WAIT_SECONDS."""
    job_id = _submit(api, {"operation": "sleep", "params": {"seconds": 0}}).json()["job_id"]
    t0 = time.monotonic()
    resp = requests.get(api.url + path.format(id=job_id), timeout=MAX_WAIT_SECONDS + 20)
    took = time.monotonic() - t0
    assert resp.status_code in (200, 202, 400, 404, 409), resp.text[:300]
    assert resp.status_code < 500
    assert took < MAX_WAIT_SECONDS + 5, f"a wait of 100000 s held the request {took:.1f} s (cap {MAX_WAIT_SECONDS})"


@pytest.mark.parametrize("wait", ["-1", "abc", "nan", "inf", "1e999", ""])
def test_bad_wait_values_are_400_or_ignored(api, wait):
    job_id = _submit(api, {"operation": "sleep", "params": {"seconds": 0}}).json()["job_id"]
    t0 = time.monotonic()
    resp = requests.get(f"{api.url}/status/{job_id}?wait={wait}", timeout=MAX_WAIT_SECONDS + 20)
    assert resp.status_code in (200, 400), resp.text[:300]
    assert time.monotonic() - t0 < MAX_WAIT_SECONDS + 5


# --- page size ----------------------------------------------------------------------------------------
def test_page_size_is_capped(api):
    for _ in range(3):
        _submit(api, {"operation": "sleep", "params": {"seconds": 0}})
    resp = requests.get(api.url + "/jobs?limit=100000", timeout=10)
    if resp.status_code == 400:
        _json_error(resp, 400)
        return
    assert resp.status_code == 200
    body = resp.json()
    assert body["limit"] <= 1000 and len(body["jobs"]) <= body["limit"], body.get("limit")


@pytest.mark.parametrize(
    "query",
    [
        "limit=-5",
        "limit=0",
        "limit=abc",
        "offset=-1",
        "offset=1e99",
        "status=bogus",
        "limit=" + "9" * 3000,
        "offset=99999999999999999999",
    ],
)
def test_bad_listing_parameters_are_400(api, query):
    resp = requests.get(f"{api.url}/jobs?{query}", timeout=10)
    assert resp.status_code in (200, 400), (query, resp.status_code, resp.text[:300])
    if resp.status_code == 400:
        _json_error(resp, 400)


# --- job id format ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "1",
        "x" * 3000,
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        str(uuid.uuid4()).upper() + "0",
        "job:*",
        "*",
        "' OR 1=1 --",
    ],
)
@pytest.mark.parametrize("route", ["/status/{}", "/jobs/{}", "/jobs/{}/result", "/download/{}"])
def test_malformed_job_ids_are_400_or_404(api, route, bad_id):
    resp = requests.get(api.url + route.format(bad_id), timeout=10)
    _json_error(resp, (400, 404))


def test_an_overlong_request_line_is_414(api):
    """gunicorn refuses request lines over 4094 bytes before the app sees them, in the API's JSON
    error shape (errors.json_errors), not its own HTML page."""
    resp = requests.get(f"{api.url}/status/{'x' * 5000}", timeout=10)
    assert _json_error(resp, 414)["error"] == "uri_too_long"


def test_unknown_well_formed_job_id_is_404(api):
    resp = requests.get(f"{api.url}/status/{uuid.uuid4()}", timeout=10)
    _json_error(resp, 404)


def test_delete_of_a_malformed_id_is_400_or_404(api):
    _json_error(requests.delete(api.url + "/jobs/job:*", timeout=10), (400, 404))


# --- literal road search --------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", [".*", "(", "[a-z]+", "a{1000000}", "\\", "(a+)+$", "%"])
def test_road_search_is_literal(api, pattern):
    """Regex syntax is matched as text: ".*" finds no road (it would match every row as a regex), and
    "(" or a catastrophic pattern is no error and no hang."""
    t0 = time.monotonic()
    resp = requests.get(api.url + "/analysis/incidents_by_road", params={"road": pattern}, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["count"] == 0, f"{pattern!r} matched rows: treated as a regex?"
    assert time.monotonic() - t0 < 20


def test_road_search_finds_a_real_road(api):
    """The positive control of the test above: the literal search does find text that is there."""
    from tests.chaos.checks import expected_result

    spec = operations().get("incidents_by_road").example_submission()
    resp = requests.get(api.url + "/analysis/incidents_by_road", params=spec["params"], timeout=30)
    assert resp.status_code == 200
    assert resp.json()["count"] == expected_result(spec)["count"] > 0


# --- PNG size ----------------------------------------------------------------------------------------------
MAX_PNG_PIXELS = 4096 * 4096


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("op", [op for op in _ops() if op.produces_png], ids=lambda op: op.name)
def test_plots_at_their_largest_parameters_stay_small(api, op):
    """Every size-like parameter of a plot is bounded, and at its maximum the PNG stays bounded."""
    params = dict(op.example_submission()["params"])
    for p in op.params:
        if p.type in {"int", "number"}:
            assert p.maximum is not None, f"{op.name}.{p.name} has no maximum"
            params[p.name] = p.maximum
    resp = requests.get(f"{api.url}/analysis/{op.name}", params=params, timeout=120)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"] == "image/png"
    width, height = _png_size(resp.content)
    assert width * height <= MAX_PNG_PIXELS, (width, height)
    assert len(resp.content) <= 8 * 1024 * 1024
