"""Issue 14 item 8: a web page in the user's browser can neither submit jobs to nor read jobs from a
tokenless API on the user's 127.0.0.1 (``kubectl port-forward``).

Before: ``text/plain`` and form bodies were parsed as JSON (202: a cross-site "simple" POST needs
no preflight), any ``Host`` was served (a DNS-rebinding page could read ``/jobs``), no response had
``X-Content-Type-Options`` or ``Cache-Control``, and ``/help`` built its URLs from the Host header.
"""

from __future__ import annotations

import json

import pytest

from jobqueue import keys

from .support import make_settings

BODY = json.dumps({"operation": "sleep", "params": {"seconds": 0}})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/jsonp",
        "text/json",
        "application/+json",  # a suffix with no type before it: RFC 6839 names none such
    ],
)
@pytest.mark.parametrize("path", ["/submit", "/jobs"])
def test_posts_that_are_not_json_are_415_and_queue_nothing(client, queue, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, data=BODY, headers=headers)
    assert response.status_code == 415, (content_type, response.get_data(as_text=True))
    assert response.get_json()["error"] == "unsupported_media_type"
    assert queue.llen(keys.queue("jobs")) == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"],
)
def test_json_posts_as_clients_send_them_are_accepted(client, content_type):
    assert client.post("/submit", data=BODY, headers={"Content-Type": content_type}).status_code == 202
    assert client.post("/submit", json={"operation": "sleep"}).status_code == 202  # requests.post(json=...)


def test_api_md_says_the_plus_json_types_the_guard_accepts(client):
    """The 415 rule accepts RFC 6839's ``+json`` types on purpose (a JSON body, and no type a page
    can send without a preflight), on Flask's path and the fast path alike (one verdict); api.md said
    any type but application/json was a 415."""
    from devstack.paths import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "api.md").read_text()
    for content_type in ("application/vnd.api+json", "application/problem+json"):
        assert client.post("/submit", data=BODY, headers={"Content-Type": content_type}).status_code == 202
        assert f"`{content_type}`" in doc, content_type
    row = next(line for line in doc.splitlines() if line.startswith("| 415 | `unsupported_media_type`"))
    assert "`application/...+json`" in row, row


@pytest.mark.parametrize(
    "host",
    [
        "rebind.attacker.example",
        "rebind.attacker.example:5000",
        "127.0.0.2",
        "localhost.attacker.example",
        "evil.example:80",
    ],
)
def test_foreign_hosts_are_refused_except_on_probes(client, host):
    for route in ("/jobs", "/help", "/status/8d295e07-0516-4166-b667-1717ed025da3", "/operations"):
        response = client.get(route, headers={"Host": host})
        assert response.status_code == 400 and response.get_json()["error"] == "host_not_allowed", (host, route)
    assert client.post("/submit", json={"operation": "sleep"}, headers={"Host": host}).status_code == 400
    for route in ("/healthz", "/metrics"):  # kubelet and Prometheus use the pod IP
        assert client.get(route, headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8080", "[::1]:5000", "LOCALHOST"])
def test_loopback_hosts_are_served(client, host):
    assert client.get("/jobs", headers={"Host": host}).status_code == 200


def test_allow_list_patterns_and_star(redis_url):
    from jobqueue_api import create_app

    client = create_app(
        make_settings(redis_url, ALLOWED_HOSTS="api.*.svc.cluster.local,class.example"), load_data=False
    ).test_client()
    assert client.get("/jobs", headers={"Host": "api.alice.svc.cluster.local:5000"}).status_code == 200
    assert client.get("/jobs", headers={"Host": "class.example"}).status_code == 200
    assert client.get("/jobs", headers={"Host": "api.alice.evil.svc.cluster.local"}).status_code == 400
    assert client.get("/jobs", headers={"Host": "localhost"}).status_code == 400
    anyone = create_app(make_settings(redis_url, ALLOWED_HOSTS="*"), load_data=False).test_client()
    assert anyone.get("/jobs", headers={"Host": "whatever.example"}).status_code == 200
    # /help never copies a Host into its examples unless an explicit entry names it
    text = anyone.get("/help", headers={"Host": "evil.example", "Accept": "*/*"}).get_data(as_text=True)
    assert "evil.example" not in text and "http://localhost:5000/submit" in text


@pytest.mark.parametrize(
    ("entry", "host"),
    [
        ("localhost:5000", "localhost:5000"),  # as the banner and a browser show the address
        ("class.example:5000", "class.example"),
        ("http://class.example:5000/", "class.example:5000"),
        ("https://Class.Example/", "class.example"),
        ("::1", "[::1]:5000"),  # as BIND_HOST takes it
        ("[::1]:5000", "[::1]:5000"),
        ("10.0.0.5:7550", "10.0.0.5:7550"),
    ],
)
def test_an_allow_list_entry_written_as_an_address_allows_its_host(redis_url, entry, host):
    """The Host check drops the request's port, so an entry with a port, a scheme or a path matched no
    request: ALLOWED_HOSTS=myvm.example:5000 answered every request by that name 400 host_not_allowed."""
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url, ALLOWED_HOSTS=entry), load_data=False).test_client()
    assert client.get("/jobs", headers={"Host": host}).status_code == 200, (entry, host)
    assert client.get("/jobs", headers={"Host": "evil.example:5000"}).status_code == 400


def test_help_examples_keep_the_apis_path_prefix(client):
    """Under ``SCRIPT_NAME=/class/jq`` (docs/ui.md) gunicorn serves only paths under the prefix and
    answers others with its own HTML 500; /help printed ``http://127.0.0.1:5000/submit``, so every
    copy-paste example got that 500."""
    doc = client.get("/help?format=json", base_url="http://localhost:5000/class/jq").get_json()
    assert doc["examples"][0].startswith("curl -s -X POST http://localhost:5000/class/jq/submit "), doc["examples"]
    assert all("/class/jq/" in e for e in doc["examples"]), doc["examples"]
    assert doc["docs"] == "http://localhost:5000/class/jq/openapi.json"
    assert doc["browser"] == {
        "jobs_page": "http://localhost:5000/class/jq/ui/",
        "api_docs": "http://localhost:5000/class/jq/docs",
    }
    text = client.get("/help", base_url="http://localhost:5000/class/jq").get_data(as_text=True)
    assert "http://localhost:5000/submit" not in text and "http://localhost:5000/class/jq/submit" in text


def test_headers_nosniff_everywhere_and_no_store_on_job_data(client, jobs):
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    for route in (
        "/help",
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/nope",
        "/operations",
        "/jobs",
        f"/status/{job_id}",
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/result",
    ):
        response = client.get(route)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", route
    for route in ("/jobs", f"/status/{job_id}", f"/jobs/{job_id}", f"/jobs/{job_id}/result", "/data"):
        assert client.get(route).headers.get("Cache-Control") == "no-store", route
    assert client.post("/submit", json={"operation": "sleep"}).headers.get("Cache-Control") == "no-store"
    assert client.delete(f"/jobs/{job_id}").headers.get("X-Content-Type-Options") == "nosniff"


def test_verdicts_remembered_per_header_value_stay_with_that_value(client, queue):
    """Host and Content-Type verdicts are remembered per raw header value (one dict lookup for a
    client that repeats itself): interleaved good and bad values each keep their own answer."""
    for _ in range(3):
        for content_type, status in (
            ("text/plain", 415),
            ("application/json", 202),
            ("Application/JSON; charset=utf-8", 202),
            ("text/json", 415),
        ):
            response = client.post("/submit", data=BODY, headers={"Content-Type": content_type})
            assert response.status_code == status, content_type
            if status == 415:
                assert response.get_json()["content_type"] == content_type.lower()
        for host, status in (("evil.example", 400), ("localhost:5000", 202), ("evil.example:5000", 400)):
            assert client.post("/submit", json={"operation": "sleep"}, headers={"Host": host}).status_code == status
    assert queue.llen(keys.queue("jobs")) == 9


@pytest.mark.parametrize("path", ["/submit", "/jobs", "/ui/login"])
def test_a_body_with_a_content_coding_is_415_and_queues_nothing(client, queue, path):
    """The API reads a body as it arrives: a gzip-compressed submit was ``400 invalid_json`` "not
    UTF-8 text" (a client that compressed its body was told to fix its encoding), and plain JSON
    labelled ``Content-Encoding: gzip`` was stored as if unlabelled. Both are now the 415 RFC 9110
    section 15.5.16 gives an unsupported content coding, with ``Accept-Encoding: identity``."""
    import gzip

    for body, coding in ((gzip.compress(BODY.encode()), "gzip"), (BODY.encode(), "gzip"), (BODY.encode(), "br")):
        response = client.post(
            path, data=body, headers={"Content-Type": "application/json", "Content-Encoding": coding}
        )
        assert response.status_code == 415, response.get_data(as_text=True)
        doc = response.get_json()
        assert doc["error"] == "unsupported_media_type" and doc["content_encoding"] == coding
        assert "uncompressed" in doc["message"] and response.headers["Accept-Encoding"] == "identity"
    assert queue.llen(keys.queue("jobs")) == 0
    for coding in ("identity", " Identity "):  # no coding at all, said explicitly: read as usual
        sent = client.post(
            "/submit", data=BODY, headers={"Content-Type": "application/json", "Content-Encoding": coding}
        )
        assert sent.status_code == 202, sent.get_data(as_text=True)
