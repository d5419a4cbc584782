"""The optional bearer token (API_TOKEN): job and analysis routes need it, probes and docs do not.

Off by default (port-forward use on a class cluster); on when an Ingress or NodePort exposes the
API. Runs the real API under gunicorn with a token set.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.security.token import TOKEN

SUBMIT = {"operation": "sleep", "params": {"seconds": 0}}
SOME_ID = str(uuid.uuid4())

# method, path, JSON body: every route that reads or changes jobs or runs an analysis
PROTECTED = [
    ("POST", "/submit", SUBMIT),
    ("POST", "/jobs", SUBMIT),
    ("GET", "/jobs", None),
    ("GET", f"/status/{SOME_ID}", None),
    ("GET", f"/jobs/{SOME_ID}", None),
    ("GET", f"/jobs/{SOME_ID}/result", None),
    ("GET", f"/download/{SOME_ID}", None),
    ("GET", f"/jobs/{SOME_ID}/results", None),
    ("GET", f"/results/{SOME_ID}", None),
    ("DELETE", f"/jobs/{SOME_ID}", None),
    ("GET", "/analysis/sleep?seconds=0", None),
    ("GET", "/incident_count_by_date?date=2024-03-06", None),
    ("GET", "/data", None),
    ("GET", "/queue", None),
]
# what probes, Prometheus and a first-time curl user need without a secret (docs/security.md)
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/help", "/", "/operations", "/docs"]


def _call(api, method, path, body, headers=None):
    return requests.request(method, api.url + path, json=body, headers=headers or {}, timeout=10)


@pytest.mark.parametrize("method,path,body", PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong", "basic-scheme", "longer", "empty"],
)
def test_protected_routes_refuse_without_the_token(token_api, method, path, body, headers):
    resp = _call(token_api, method, path, body, headers)
    assert resp.status_code == 401, (method, path, resp.status_code, resp.text[:200])
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]
    assert "bearer" in resp.headers.get("WWW-Authenticate", "").lower()
    assert TOKEN not in resp.text


@pytest.mark.parametrize("method,path,body", PROTECTED)
def test_protected_routes_answer_with_the_token(token_api, method, path, body):
    resp = _call(token_api, method, path, body, {"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code != 401, (method, path, resp.text[:200])
    assert resp.status_code < 500, (method, path, resp.status_code, resp.text[:200])


def test_a_submitted_job_is_readable_with_the_token(token_api):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = _call(token_api, "POST", "/submit", SUBMIT, auth)
    assert resp.status_code == 202
    job_id = resp.json()["job_id"]
    status = _call(token_api, "GET", f"/status/{job_id}", None, auth)
    assert status.status_code == 200 and status.json()["status"] == "submitted"
    assert _call(token_api, "GET", f"/status/{job_id}", None).status_code == 401


@pytest.mark.parametrize("path", OPEN)
def test_probe_metrics_and_docs_routes_stay_open(token_api, path):
    resp = requests.get(token_api.url + path, timeout=10)
    ok = (200, 503) if path == "/readyz" else (200,)  # readiness itself is not this test's business
    assert resp.status_code in ok, (path, resp.status_code, resp.text[:200])
    assert TOKEN not in resp.text, f"{path} leaks the token"


def test_every_documented_route_is_classified(token_api):
    """A route added later must be put in PROTECTED or OPEN here: nothing is exempt by accident."""
    import re

    paths = requests.get(token_api.url + "/openapi.json", timeout=10).json()["paths"]
    template = {re.sub(r"\{[^}]+\}", "{}", p) for p in paths}
    known = {re.sub(r"[0-9a-f-]{36}", "{}", path.split("?")[0]) for _, path, _ in PROTECTED} | set(OPEN)
    known |= {"/analysis/{}"} | {p for p in template if p.startswith("/analysis/")}  # the analysis blueprint
    assert template <= known, f"routes neither protected nor listed as open: {sorted(template - known)}"


@pytest.mark.parametrize(
    "token", ["\ud800", f"{TOKEN}\udfff", "admin:\udc80"], ids=["alone", "after-token", "pasted-line"]
)
def test_a_login_token_with_a_lone_surrogate_is_unknown_not_a_500(token_api, token):
    """``{"token": "\\ud800"}`` posted to the web page's login (JSON escapes can write a lone surrogate,
    a header cannot) was a 500 with a logged traceback: the token was encoded to UTF-8 to compare it
    with the API's, which a lone surrogate cannot be. It is a token the API does not know: 401."""
    resp = requests.post(token_api.url + "/ui/login", json={"token": token}, timeout=10)
    assert resp.status_code == 401, (resp.status_code, resp.text[:200])
    assert resp.json()["error"] == "unauthorized" and resp.json()["param"] == "token"
    assert "Set-Cookie" not in resp.headers
