"""Issue 14 item 7: whatever the worker would refuse is a 400 at submit, never a 202 and a failed job.

Before: a lone surrogate in ``road``, ``end`` before ``start``, a range over 5,000 days (also by
default: start 1990 runs to the data's last day) and a blank road were all 202, then failed in the
worker (the surrogate after 3 attempts); ``<uuid>%0a`` passed the id check (404, not 400); and a
repeated query parameter on ``/analysis`` silently used its first value.
"""

from __future__ import annotations

import json

import pytest

from jobqueue import keys
from jobqueue.jobs import is_valid_job_id

BAD_SUBMISSIONS = [
    ("incidents_by_road", {"road": "\ud800"}, "road"),
    ("incidents_by_road", {"road": "I-35 \udfff"}, "road"),
    ("incidents_by_road", {"road": "   "}, "road"),
    ("incidents_by_road", {"road": ""}, "road"),
    ("daily_counts", {"start": "2024-02-01", "end": "2024-01-01"}, "end"),
    ("daily_counts", {"start": "1700-01-01", "end": "2199-12-31"}, "end"),
    ("plot_daily_counts", {"start": "1990-01-01"}, "end"),  # default end: the data's last day
    ("plot_daily_counts", {"start": "2024-03-01", "end": "2024-02-29"}, "end"),
]


def _post(client, operation, params):
    # json.dumps writes a lone surrogate as the escape "\ud800", as a client's JSON library would
    return client.post(
        "/submit", data=json.dumps({"operation": operation, "params": params}), content_type="application/json"
    )


@pytest.mark.parametrize("operation,params,param", BAD_SUBMISSIONS)
def test_what_the_worker_would_refuse_is_a_400_at_submit(data_app, operation, params, param):
    response = _post(data_app.test_client(), operation, params)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_param" and body["param"] == param


@pytest.mark.parametrize(
    "params,param,said",
    [
        ({"date": "2024-02-30"}, "date", "2024-02-30 has day 30, and 2024-02 has days 01 to 29"),
        ({"date": "2023-02-29"}, "date", "2023-02-29 has day 29, and 2023-02 has days 01 to 28"),
        ({"date": "2024-13-01"}, "date", "2024-13-01 has month 13 (months are 01 to 12)"),
    ],
)
def test_a_date_in_the_asked_form_that_is_no_day_says_which_part_is_wrong(client, queue, params, param, said):
    """'2024-02-30' was refused with "'date' must be a date YYYY-MM-DD, got '2024-02-30'": the form
    the student had written, so the message read as wrong. Nothing is queued."""
    response = _post(client, "incident_count_by_date", params)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_param",
        "message": f"'{param}' must be a calendar day: {said}",
        "param": param,
    }
    response = _post(client, "daily_counts", {"start": "2024-01-01", "end": params["date"]})
    assert response.status_code == 400 and response.get_json()["param"] == "end"
    assert said in response.get_json()["message"]
    assert queue.llen(keys.queue("jobs")) == 0


def test_cross_parameter_rules_hold_without_the_data_too(client):
    """An API started without DATA_PATH still refuses what the dates alone decide."""
    assert _post(client, "daily_counts", {"start": "2024-02-01", "end": "2024-01-01"}).status_code == 400
    assert _post(client, "daily_counts", {"start": "1700-01-01", "end": "2199-12-31"}).status_code == 400
    assert _post(client, "daily_counts", {"start": "2024-01-01", "end": "2024-02-01"}).status_code == 202


def test_good_neighbours_of_the_bad_ones_are_accepted(data_app):
    client = data_app.test_client()
    for operation, params in [
        ("incidents_by_road", {"road": "183"}),
        ("incidents_by_road", {"road": " é "}),
        ("daily_counts", {"start": "2024-01-01", "end": "2024-01-01"}),
        ("daily_counts", {}),
        ("plot_daily_counts", {"start": "2020-01-01"}),
    ]:
        response = _post(client, operation, params)
        assert response.status_code == 202, (operation, params, response.get_json())


@pytest.mark.parametrize("suffix", ["%0a", "%0A", "%0d", "%00", "%20"])
def test_job_ids_are_matched_whole(client, suffix):
    job_id = "8d295e07-0516-4166-b667-1717ed025da3"
    assert is_valid_job_id(job_id) and not is_valid_job_id(job_id + "\n")
    for route in ("/status/{}", "/jobs/{}", "/jobs/{}/result", "/download/{}"):
        response = client.get(route.format(job_id + suffix))
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_job_id", route
    assert client.delete(f"/jobs/{job_id}{suffix}").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "/analysis/top_locations?n=5&n=1000",
        "/analysis/top_locations?n=1000&n=5",
        "/incident_count_by_date?date=2024-01-15&date=bad",
        "/analysis/incidents_by_road?road=a&road=b",
    ],
)
def test_repeated_query_parameters_on_analysis_are_a_400(data_app, query):
    response = data_app.test_client().get(query)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_param" and "more than once" in response.get_json()["message"]


def test_null_params_mean_no_parameters_as_documented(client):
    """docs/api.md: `"params": null`, like leaving `params` out, means no parameters; any other
    `params` that is not an object is a 400 `invalid_params`."""
    assert client.post("/submit", json={"operation": "unique_issues", "params": None}).status_code == 202
    refused = client.post("/submit", json={"operation": "unique_issues", "params": []})
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_params"


DUPLICATE_KEYS = [
    (b'{"operation": "nope", "operation": "unique_issues"}', "operation"),
    (b'{"operation": "unique_issues", "params": {}, "params": {"x": 1}}', "params"),
    (b'{"operation": "incident_count_by_date", "params": {"date": "bad", "date": "2024-01-15"}}', "date"),
    (b'{"operation": "incident_count_by_date", "params": {"date": "2024-01-15", "date": "2024-01-15"}}', "date"),
]


@pytest.mark.parametrize("route", ["/submit", "/jobs", "/submit?x=1"])
@pytest.mark.parametrize("body,key", DUPLICATE_KEYS)
def test_a_key_given_twice_in_a_body_is_a_400_naming_it(client, route, body, key):
    """``{"operation": "a", "operation": "b"}`` was taken as "b" (json's last-wins) and stored,
    where a query parameter given twice is a 400: a body's key given twice is refused the same way,
    on every route that reads a JSON body (the tutorial's submit below Flask too: test_fast_submit.py)."""
    response = client.post(route, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    doc = response.get_json()
    assert doc["error"] == "duplicate_key" and doc["key"] == key and f"'{key}'" in doc["message"], doc


def test_the_login_body_refuses_a_key_given_twice_too(client):
    response = client.post("/ui/login", data=b'{"token": "a", "token": "b"}', content_type="application/json")
    assert response.status_code == 400 and response.get_json()["key"] == "token", response.get_json()
    assert client.post("/ui/login", json={"token": "a"}).status_code == 200  # no tokens set: logged in


def test_a_deeply_nested_login_body_is_a_400_not_a_500(client):
    """The login form's body goes through submission.loads as /submit's does, but only its
    ValueError was caught: 2,000 nested arrays (2 KB, well inside its 4 KB cap) raised json's
    RecursionError out of the route, a 500 internal_error with a logged traceback."""
    response = client.post("/ui/login", data=b"[" * 2000 + b"]" * 2000, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_body", response.get_json()


def test_a_deeply_nested_submit_body_is_a_400_in_plain_words(client):
    """Nested deeper than json reads: the 400 said "the body is not valid JSON: maximum recursion
    depth exceeded while decoding a JSON array from a unicode string", the interpreter's words."""
    nested = b'{"operation": "unique_issues", "params": {"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}"
    response = client.post("/submit", data=nested, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    doc = response.get_json()
    assert doc["error"] == "invalid_json" and "nested too deeply" in doc["message"], doc
    assert "recursion" not in doc["message"], doc


BODY_TEXT = '{"operation": "sleep", "params": {"seconds": 0}}'
NOT_UTF8 = [
    (b"\xef\xbb\xbf" + BODY_TEXT.encode(), "byte order mark"),
    (BODY_TEXT.encode("utf-16"), "UTF-16"),
    (BODY_TEXT.encode("utf-16-le"), "UTF-16-LE"),
    (BODY_TEXT.encode("utf-16-be"), "UTF-16-BE"),
    (BODY_TEXT.encode("utf-32"), "UTF-32"),
    (b'{"operation": "sleep", "params": {"seconds": 0}, "x": "\xed\xa0\x80"}', "byte 55"),  # a surrogate's bytes
    (b'{"operation": "sleep\xff"}', "byte 20"),
]


@pytest.mark.parametrize("route", ["/submit", "/jobs", "/submit?x=1"])
@pytest.mark.parametrize("body,named", NOT_UTF8)
def test_a_body_that_is_not_utf8_is_a_400_saying_so(client, queue, route, body, named):
    """docs/api.md says a body that is not UTF-8 is a 400; a UTF-8 byte order mark, UTF-16 and
    UTF-32 were accepted (202, stored), as ``json.loads`` guesses a bytes body's encoding."""
    response = client.post(route, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    doc = response.get_json()
    assert doc["error"] == "invalid_json" and doc["message"].startswith("the body is not UTF-8 text"), doc
    assert named in doc["message"], doc
    assert queue.llen(keys.queue("jobs")) == 0


def test_the_login_body_must_be_utf8_too(client):
    response = client.post("/ui/login", data='{"token": "a"}'.encode("utf-16"), content_type="application/json")
    doc = response.get_json()
    assert response.status_code == 400 and doc["error"] == "invalid_json" and "UTF-16" in doc["message"], doc


@pytest.mark.parametrize("route", ["/submit", "/jobs", "/submit?x=1"])
@pytest.mark.parametrize(
    "operation,param,literal,words",
    [
        ("top_locations", "n", "9" * 5000, "at most"),
        ("top_locations", "n", "-" + "9" * 5000, "at least"),
        ("sleep", "seconds", "1" + "0" * 4500, "out of range"),
        ("incidents_by_road", "road", "7" * 4400, "must be a string"),
    ],
)
def test_a_json_integer_of_thousands_of_digits_is_its_parameters_400(
    client, queue, route, operation, param, literal, words
):
    """Valid JSON (RFC 8259 sets no digit limit) whose integer has over 4,300 digits was a 400
    ``invalid_json``, "the body is not valid JSON: Exceeds the limit (4300 digits) for integer string
    conversion ... use sys.set_int_max_str_digits() to increase the limit": valid JSON called
    invalid, with advice for the server's code. Now the parameter's own check names it."""
    before = queue.llen(keys.queue("jobs"))
    body = f'{{"operation": "{operation}", "params": {{"{param}": {literal}}}}}'
    response = client.post(route, data=body, content_type="application/json")
    got = response.get_json()
    assert response.status_code == 400 and got["error"] == "invalid_param" and got["param"] == param, got
    assert words in got["message"] and "sys." not in got["message"], got
    assert queue.llen(keys.queue("jobs")) == before


@pytest.mark.parametrize("written", ["0.99999999999999999", "5.00000000000000000001", "1.00000000000000000000001e1"])
def test_an_integer_parameter_refuses_a_number_that_only_rounds_to_one(client, queue, written):
    """``"n": 0.99999999999999999`` reads as the float 1.0 and was stored as n=1: a number that is not
    whole, taken for one because a float cannot tell them apart. The body's own digits decide."""
    body = '{"operation": "top_locations", "params": {"n": ' + written + "}}"
    response = client.post("/submit", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["param"] == "n" and "must be an integer" in response.get_json()["message"]
    assert queue.llen(keys.queue("jobs")) == 0
    for whole in ("5.0", "5.000000000000000000000", "0.5e1", "5"):  # whole numbers, however written
        body = '{"operation": "top_locations", "params": {"n": ' + whole + "}}"
        response = client.post("/submit", data=body, content_type="application/json")
        assert response.status_code == 202, (whole, response.get_json())
    body = '{"operation": "incidents_within_radius", "params": {"latitude": 30.26720000000000000001, "longitude": -97.7431, "radius_km": 1.00000000000000000001}}'
    assert client.post("/submit", data=body, content_type="application/json").status_code == 202  # a number param


@pytest.mark.parametrize(
    "body,error,field",
    [
        ('{"operation": "sleep", "\\ud800": 1}', "unknown_field", "field"),
        ('{"operation": "sleep", "params": {"sec\\udfffonds": 1}}', "invalid_param", "param"),
        ('{"operation": "sleep", "params": {"\\ud800": 1, "\\ud800": 2}}', "duplicate_key", "key"),
    ],
    ids=["field", "parameter", "key-given-twice"],
)
def test_an_error_naming_a_key_with_a_lone_surrogate_is_strict_json(client, queue, body, error, field):
    """A lone surrogate in an unknown key was sent back as it came, so the 400's body held the escape
    ``\\ud800`` of no character, which strict JSON readers (I-JSON, RFC 7493; Rust's serde_json)
    refuse: the client could not read why it was refused. The name now comes back as the escape's text."""
    response = client.post("/submit", data=body, content_type="application/json")
    assert response.status_code == 400
    named = response.get_json()
    assert named["error"] == error and named[field].replace("\\udfff", "\\ud800") in (
        "\\ud800",
        "sec\\ud800onds",
    ), named
    # every string of the answer is text: it encodes as UTF-8 (a lone surrogate does not)
    json.dumps(named, ensure_ascii=False).encode("utf-8")
    assert queue.llen(keys.queue("jobs")) == 0
