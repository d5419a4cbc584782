"""POST /submit and POST /jobs: the accepted path and every way a body can be wrong."""

from __future__ import annotations

import json

import pytest

from jobqueue import keys
from jobqueue.jobs import JobStatus, is_valid_job_id

from .support import make_settings, submit


def test_submit_stores_and_queues_the_job(client, jobs, queue):
    response = client.post("/submit", json={"operation": "sleep", "params": {"seconds": "0.25"}})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "submitted" and is_valid_job_id(body["job_id"])
    doc = json.loads(jobs.get(keys.job(body["job_id"])))
    assert doc["status"] == JobStatus.SUBMITTED.value
    assert doc["params"] == {"seconds": 0.25}  # coerced by the operation's declaration
    assert queue.lrange(keys.queue("jobs"), 0, -1) == [body["job_id"]]
    assert jobs.zscore(keys.JOB_INDEX, body["job_id"]) == pytest.approx(doc["submitted_at"])


def test_the_202_is_what_jsonify_writes_byte_for_byte(app, client):
    """The submit route writes its tiny 202 itself; it must stay exactly Flask's jsonify output
    (compact separators, key order, trailing newline, headers) that clients have always parsed."""
    from flask import jsonify

    response = client.post("/submit", json={"operation": "sleep"})
    job_id = json.loads(response.data)["job_id"]
    with app.test_request_context():
        expected = jsonify({"job_id": job_id, "status": "submitted"})
    assert response.status_code == 202
    assert response.data == expected.get_data()
    assert response.headers["Content-Type"] == expected.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == expected.headers["Content-Length"]
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Content-Type-Options"] == "nosniff"


def test_submit_fills_defaults_when_params_are_absent(client, jobs):
    response = client.post("/submit", json={"operation": "sleep"})
    assert response.status_code == 202
    doc = json.loads(jobs.get(keys.job(response.get_json()["job_id"])))
    assert doc["params"] == {"seconds": 0.0}


def test_post_jobs_sets_location(client):
    response = client.post("/jobs", json={"operation": "sleep", "params": {}})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    assert client.get(response.headers["Location"]).get_json()["job_id"] == job_id


def test_separate_queue_and_jobs_dbs_are_honoured(redis_url):
    from jobqueue.connections import jobs_redis, queue_redis
    from jobqueue_api import create_app

    settings = make_settings(redis_url, REDIS_JOBS_DB="3", REDIS_QUEUE_DB="4", QUEUE_NAME="other")
    job_id = submit(create_app(settings, load_data=False).test_client())
    assert jobs_redis(settings).exists(keys.job(job_id))
    assert queue_redis(settings).lrange(keys.queue("other"), 0, -1) == [job_id]


@pytest.mark.parametrize(
    "body,content_type,code,param",
    [
        (b"", "application/json", "empty_body", None),
        (b"   ", "application/json", "empty_body", None),
        (b"{bad json", "application/json", "invalid_json", None),
        (b"\xff\xfe\x00garbage", "application/json", "invalid_json", None),
        (b"[" * 20000 + b"]" * 20000, "application/json", "invalid_json", None),
        (b"[1, 2]", "application/json", "invalid_body", None),
        (b'"sleep"', "application/json", "invalid_body", None),
        (b"null", "application/json", "invalid_body", None),
        (b"{}", "application/json", "missing_operation", None),
        (b'{"operation": ""}', "application/json", "missing_operation", None),
        (b'{"operation": "no_such_op"}', "application/json", "unknown_operation", None),
        (b'{"operation": 42}', "application/json", "unknown_operation", None),
        (b'{"operation": "sleep", "seconds": 1}', "application/json", "unknown_field", None),
        (b'{"operation": "sleep", "params": [1]}', "application/json", "invalid_params", None),
        (b'{"operation": "sleep", "params": {"nope": 1}}', "application/json", "invalid_param", "nope"),
        (b'{"operation": "sleep", "params": {"seconds": "soon"}}', "application/json", "invalid_param", "seconds"),
        (b'{"operation": "sleep", "params": {"seconds": -1}}', "application/json", "invalid_param", "seconds"),
        (b'{"operation": "sleep", "params": {"seconds": 1e999}}', "application/json", "invalid_param", "seconds"),
        (b'{"operation": "sleep", "params": {"seconds": NaN}}', "application/json", "invalid_param", "seconds"),
        (b'{"operation": "sleep", "params": {"seconds": true}}', "application/json", "invalid_param", "seconds"),
        (b'{"operation": "sleep", "params": {"seconds": 3600}}', "application/json", "invalid_param", "seconds"),
    ],
)
@pytest.mark.parametrize("path", ["/submit", "/jobs"])
def test_bad_bodies_get_a_named_400_and_queue_nothing(client, queue, path, body, content_type, code, param):
    response = client.post(path, data=body, content_type=content_type)
    assert response.status_code == 400, response.get_data(as_text=True)
    doc = response.get_json()
    assert doc["error"] == code and doc["message"]
    if param:
        assert doc["param"] == param and param in doc["message"]
    assert queue.llen(keys.queue("jobs")) == 0


@pytest.mark.parametrize(
    "body,named",
    [(b"[1, 2]", "an array"), (b'"sleep"', "a string"), (b"null", "null"), (b"3", "a number"), (b"true", "true")],
)
def test_a_body_that_is_not_an_object_is_named_in_json_words(client, body, named):
    """The 400 said "not list", "not NoneType", "not str": Python's names, which a curl user never
    wrote; it now names what they sent as JSON names it."""
    doc = client.post("/submit", data=body, content_type="application/json").get_json()
    assert doc["error"] == "invalid_body" and doc["message"].endswith(f"not {named}"), doc
    assert "NoneType" not in doc["message"] and "list" not in doc["message"], doc


def test_unknown_operation_lists_the_known_ones(client):
    doc = client.post("/submit", json={"operation": "nope"}).get_json()
    assert "sleep" in doc["operations"]


def test_a_misspelt_operation_gets_a_suggestion(client, queue):
    """``top_locatons`` got the list of all 17 operations and no hint: the 400 (and /analysis's
    404) now names the closest one, in the message and as ``did_you_mean``; a name close to none
    gets no guess."""
    doc = client.post("/submit", json={"operation": "top_locatons"}).get_json()
    assert doc["error"] == "unknown_operation" and doc["did_you_mean"] == "top_locations", doc
    assert "(did you mean 'top_locations'?)" in doc["message"] and "top_locations" in doc["operations"]
    doc = client.get("/analysis/plot_top_location").get_json()
    assert doc["error"] == "unknown_operation" and doc["did_you_mean"] == "plot_top_locations", doc
    doc = client.post("/submit", json={"operation": "TOP_LOCATIONS"}).get_json()  # caps lock: the case aside
    assert doc["did_you_mean"] == "top_locations" and "(did you mean 'top_locations'?)" in doc["message"], doc
    doc = client.post("/submit", json={"operation": "zzzz"}).get_json()
    assert doc["error"] == "unknown_operation" and "did_you_mean" not in doc and "did you mean" not in doc["message"]
    doc = client.post("/submit", json={"operation": "top_locations" + "s" * 60}).get_json()
    assert "did_you_mean" not in doc and "... (73 characters)" in doc["message"], doc  # cut at 64, no guess
    assert queue.llen(keys.queue("jobs")) == 0


def test_body_over_the_limit_is_413(redis_url, queue):
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url, MAX_BODY_BYTES="1024"), load_data=False).test_client()
    big = json.dumps({"operation": "sleep", "params": {"seconds": 0}, "pad": "x" * 2000})
    response = client.post("/submit", data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert "MAX_BODY_BYTES" in response.get_json()["message"]
    assert queue.llen(keys.queue("jobs")) == 0


def test_wrong_method_is_405_json(client):
    response = client.get("/submit")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    assert client.put("/jobs").status_code == 405


def test_unknown_route_is_404_json(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "no such route; GET /help lists them"}


@pytest.mark.parametrize(
    "method,path,route",
    [
        ("POST", "/submit/", "/submit"),  # curl -X POST $API/submit/
        ("GET", "/operations/", "/operations"),
        ("GET", "/jobs/", "/jobs"),
        ("GET", "/status/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f/", "/status/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"),
        (
            "GET",
            "/jobs/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f/result/",
            "/jobs/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f/result",
        ),
        ("GET", "/submit/", "/submit"),  # a route of another method: without the slash, its 405
    ],
)
def test_a_route_with_a_trailing_slash_is_named_in_the_404(client, queue, method, path, route):
    """`curl -X POST $API/submit/` answered "no such route; GET /help lists them", and /help lists
    /submit: the slash was the mistake, so the 404 says so and names the route."""
    response = client.open(path, method=method, json={"operation": "top_locations", "params": {"n": 3}})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "not_found",
        "message": f"no such route: {path} ends in '/'; the route is {route}, without it",
    }
    assert queue.llen(keys.queue("jobs")) == 0


@pytest.mark.parametrize("path", ["/no/such/route/", "/submitt/", "/jobs/x/y/", "/status/../"])
def test_a_trailing_slash_on_no_route_keeps_the_plain_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "message": "no such route; GET /help lists them"}


@pytest.mark.parametrize("path", ["/status/..%2f", "/status/x%2Fresult", "/jobs/x%2fresult", "/download/a%2Fb"])
def test_an_escaped_slash_is_part_of_the_job_id(client, path):
    """gunicorn (and werkzeug) unescape the whole path: `/status/x%2Fresult` reached no route (a 404)
    and `DELETE /jobs/x%2Fresult` a 405; the escaped slash is the id's, which is no job id."""
    for method in ("GET", "DELETE") if path.startswith("/jobs/") else ("GET",):
        response = client.open(path, method=method)
        assert response.status_code == 400, (method, response.get_json())
        assert response.get_json()["error"] == "invalid_job_id"


def test_stored_document_is_what_the_job_model_writes(client, jobs):
    """The submit path serialises without Job.to_json (speed); the bytes must not differ."""
    from jobqueue.jobs import Job

    job_id = submit(client, params={"seconds": 1.5})
    raw = jobs.get(keys.job(job_id))
    assert Job.from_json(raw).to_json() == raw


@pytest.mark.parametrize(
    "body,code,field",
    [
        ({"operation": "sleep", "params": {"k" * 60000: 1}}, "invalid_param", "param"),
        ({"operation": "sleep", "x" * 60000: 1}, "unknown_field", "field"),
        ({"operation": "o" * 60000}, "unknown_operation", None),
    ],
)
def test_a_huge_unknown_name_is_not_echoed_back_whole(client, body, code, field):
    """Security review I4: an unknown name came back twice (message and field), so a 60,000-character
    key made a 120 KB error. The error still names it, by its start and its length."""
    response = client.post("/submit", json=body)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == code and "(60000 characters)" in doc["message"]
    assert len(response.get_data()) < 2000, len(response.get_data())
    if field:
        assert doc[field].endswith("... (60000 characters)")


def test_a_huge_duplicate_key_is_not_echoed_back_whole(client):
    """The same for a key given twice (duplicate_key): its name is cut like an unknown one."""
    key = "d" * 30000
    response = client.post("/submit", data=f'{{"{key}": 1, "{key}": 2}}', content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "duplicate_key"
    assert len(response.get_data()) < 2000, len(response.get_data())
    assert response.get_json()["key"].endswith("... (30000 characters)")


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/jobs//result"),
        ("GET", "/status//x"),
        ("GET", "/jobs//"),
    ],
)
def test_a_doubled_slash_is_a_json_404_not_a_redirect_to_another_route(client, queue, method, path):
    """`/jobs//result` answered a 308 HTML redirect to `/jobs/result`, another route (a job named
    "result"), and `/status//x` one to `/status/x`: a path with an empty part names no route."""
    # (PATH_INFO as gunicorn passes it: the test client reads a leading "//" as a host name)
    body = {"operation": "top_locations", "params": {"n": 3}}
    response = client.open("/", method=method, json=body, environ_overrides={"PATH_INFO": path})
    assert response.status_code == 404, (response.status_code, response.headers.get("Location"))
    assert response.get_json()["error"] == "not_found"
    assert queue.llen(keys.queue("jobs")) == 0


def test_a_leading_doubled_slash_is_the_route(client, queue):
    """`curl -X POST $API/submit` with API ending in `/` sends `//submit`: Werkzeug reads leading
    slashes as one, so it is the submit (not a 404 and not a redirect)."""
    body = {"operation": "top_locations", "params": {"n": 3}}
    response = client.open("/", method="POST", json=body, environ_overrides={"PATH_INFO": "//submit"})
    assert response.status_code == 202, response.get_json()
    assert queue.llen(keys.queue("jobs")) == 1
