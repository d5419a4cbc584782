"""Usage pages, the catalogue, synchronous analysis, /data, probes and the optional token."""

from __future__ import annotations

import json

import pytest

from .support import make_settings


def test_help_is_curl_ready_text(client):
    for route in ("/", "/help"):
        response = client.get(route, headers={"Accept": "*/*"})
        assert response.status_code == 200 and response.mimetype == "text/plain"
        text = response.get_data(as_text=True)
        assert "POST    /submit" in text and "curl -s -X POST http://localhost/submit" in text
        assert '"operation": "sleep"' in text


def test_help_as_json(client):
    doc = client.get("/help?format=json").get_json()
    assert "sleep" in doc["operations"] and any(r["path"] == "/submit" for r in doc["routes"])
    assert client.get("/", headers={"Accept": "application/json"}).get_json() == doc


def test_help_examples_are_accepted_by_submit(client):
    """Every copy-paste example on /help is a valid submission."""
    for example in client.get("/help?format=json").get_json()["examples"]:
        if "-d '" in example:
            body = example.split("-d '", 1)[1].rsplit("'", 1)[0]
            assert client.post("/submit", data=body, content_type="application/json").status_code == 202


def test_operations_lists_params_and_examples(client):
    doc = client.get("/operations").get_json()
    ops = {op["name"]: op for op in doc["operations"]}
    assert doc["count"] == len(ops) and "sleep" in ops
    seconds = ops["sleep"]["params"][0]
    assert seconds["name"] == "seconds" and seconds["maximum"] == 60.0
    assert client.post("/submit", json=ops["sleep"]["example"]).status_code == 202


def test_sleep_is_absent_without_diagnostics(redis_url):
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url, DIAGNOSTIC_OPERATIONS="0"), load_data=False).test_client()
    assert "sleep" not in [op["name"] for op in client.get("/operations").get_json()["operations"]]
    assert client.post("/submit", json={"operation": "sleep"}).get_json()["error"] == "unknown_operation"


def test_synchronous_analysis_of_a_dataset_free_operation(client):
    response = client.get("/analysis/sleep?seconds=0")
    assert response.status_code == 200 and response.get_json() == {"slept": 0.0}
    response = client.get("/analysis/sleep?seconds=many")
    assert response.status_code == 400 and response.get_json()["param"] == "seconds"
    response = client.get("/analysis/sleep?bogus=1")
    assert response.status_code == 400 and response.get_json()["param"] == "bogus"
    response = client.get("/analysis/no_such_op")
    assert response.status_code == 404 and response.get_json()["error"] == "unknown_operation"


def test_without_data_the_data_routes_say_so(client):
    response = client.get("/data")
    assert response.status_code == 503 and response.get_json()["error"] == "data_not_loaded"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "not ready",
        "error": "not_ready",
        "redis": True,
        "redis_writable": True,
        "data": False,
    }


def test_bad_data_path_is_not_ready_booleans_only_and_the_reason_is_logged(redis_url, tmp_path, caplog):
    """Issue 14 item 9: /readyz is open to anyone, so it says yes or no; the path goes to the log."""
    from jobqueue_api import create_app

    missing = tmp_path / "nope.csv"
    client = create_app(make_settings(redis_url, DATA_PATH=str(missing))).test_client()
    caplog.set_level("WARNING", logger="jobqueue.api")
    response = client.get("/readyz")
    assert response.get_json() == {
        "status": "not ready",
        "error": "not_ready",
        "redis": True,
        "redis_writable": True,
        "data": False,
    }
    assert "nope.csv" not in response.get_data(as_text=True)
    assert any("nope.csv" in str(getattr(r, "problems", "")) for r in caplog.records if r.msg == "not ready")
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_with_the_sample_loaded(data_app):
    client = data_app.test_client()
    assert client.get("/readyz").status_code == 200
    info = client.get("/data").get_json()
    assert info["rows"] > 0 and info["identity"]
    ops = {op["name"]: op for op in client.get("/operations").get_json()["operations"]}
    example = ops["incident_count_by_date"]["example"]["params"]
    response = client.get("/incident_count_by_date", query_string=example)
    assert response.status_code == 200 and isinstance(response.get_json()["incident_count"], int)
    assert client.get("/analysis/incident_count_by_date", query_string=example).get_json() == response.get_json()
    assert client.get("/incident_count_by_date?date=yesterday").status_code == 400
    # a parameter the operation itself refuses (not just its declared type) is a 400 too, not a 500
    if "incidents_by_road" in ops:
        response = client.get("/analysis/incidents_by_road?road=")
        assert response.status_code == 400 and response.get_json()["param"] == "road"
    for name, op in ops.items():
        if name == "sleep":
            continue
        response = client.get(f"/analysis/{name}", query_string=op["example"]["params"])
        assert response.status_code == 200, (name, response.get_data(as_text=True)[:200])
        assert response.mimetype == ("image/png" if op["result"] == "image/png" else "application/json")


class TestToken:
    TOKEN = "s3cret-token"

    @pytest.fixture
    def client(self, redis_url):
        from jobqueue_api import create_app

        return create_app(make_settings(redis_url, API_TOKEN=self.TOKEN), load_data=False).test_client()

    @pytest.mark.parametrize(
        "method,route",
        [
            ("post", "/submit"),
            ("post", "/jobs"),
            ("get", "/jobs"),
            ("get", "/status/00000000-0000-4000-8000-000000000000"),
            ("delete", "/jobs/00000000-0000-4000-8000-000000000000"),
            ("get", "/analysis/sleep"),
            ("get", "/data"),
        ],
    )
    def test_job_routes_need_the_token(self, client, method, route):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {self.TOKEN}"}):
            response = getattr(client, method)(route, headers=headers)
            assert response.status_code == 401
            assert response.get_json()["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    def test_with_the_token_everything_works(self, client):
        headers = {"Authorization": f"Bearer {self.TOKEN}"}
        response = client.post("/submit", json={"operation": "sleep"}, headers=headers)
        assert response.status_code == 202
        assert client.get(f"/status/{response.get_json()['job_id']}", headers=headers).status_code == 200

    @pytest.mark.parametrize("route", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/operations", "/help"])
    def test_probes_and_docs_stay_open(self, client, route):
        assert client.get(route).status_code in (200, 503)
        assert client.get(route).status_code != 401

    def test_help_shows_the_header(self, client):
        assert "Authorization: Bearer $JOBQUEUE_TOKEN" in client.get("/help").get_data(as_text=True)


def test_json_responses_are_utf8_safe(client):
    body = json.dumps({"operation": "sleep", "params": {"\ud800": 1}})
    response = client.post("/submit", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_param"
