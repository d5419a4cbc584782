"""/docs (Swagger UI from vendored files) and the COE 332 route names, through the Flask test client."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest

from tests.api.support import finish, submit


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)


@pytest.mark.parametrize("prefix", ["", "/class/jobqueue"])
def test_docs_page_and_every_asset_it_names_are_served(app, prefix):
    """Relative links: the page works at / and with SCRIPT_NAME (an Ingress path prefix)."""
    client = app.test_client()
    base = f"http://localhost{prefix}"  # the test client puts the path part in SCRIPT_NAME

    def get(url):  # a path as the browser would request it, prefix included
        assert url.startswith(prefix + "/"), url
        return client.get(url[len(prefix) :], base_url=base)

    page = get(f"{prefix}/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = page.get_data(as_text=True)
    assert "<script>" not in html  # nothing inline: the CSP would block it
    assets = _assets(html)
    assert any("swagger-ui-bundle.js" in a for a in assets) and any("swagger-ui.css" in a for a in assets)
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset  # no CDN
        url = urljoin(f"http://x{prefix}/docs", asset)[len("http://x") :]
        assert url.startswith(prefix + "/ui/static/")
        response = get(url)
        assert response.status_code == 200, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert len(response.data) > 100
    spec_url = urljoin(f"http://x{prefix}/docs", re.search(r'data-spec="([^"]+)"', html)[1])[len("http://x") :]
    assert get(spec_url).get_json()["openapi"].startswith("3.1")


def test_help_links_the_docs_page(client):
    assert "/docs" in client.get("/help").get_data(as_text=True)


@pytest.mark.parametrize("route", ["/results/{}", "/jobs/{}/results", "/jobs/{}/result", "/download/{}"])
def test_coe332_result_routes_are_aliases(client, jobs, route):
    job_id = submit(client)
    response = client.get(route.format(job_id))
    assert response.status_code == 409 and response.get_json()["error"] == "job_not_finished"
    finish(jobs, job_id, result={"slept": 0.0})
    response = client.get(route.format(job_id))
    assert response.status_code == 200 and response.get_json() == {"slept": 0.0}
    assert client.get(route.format("not-a-uuid")).get_json()["error"] == "invalid_job_id"


def test_coe332_post_jobs_then_get_jobs_id(client):
    response = client.post("/jobs", json={"operation": "sleep", "params": {"seconds": 0}})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"].endswith(f"/jobs/{job_id}")
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "submitted"
    listed = client.get("/jobs").get_json()["jobs"]  # GET /jobs still lists
    assert [j["job_id"] for j in listed] == [job_id]


def test_aliases_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in ("/results/{job_id}", "/jobs/{job_id}/results", "/jobs/{job_id}", "/jobs"):
        assert path in paths
    assert "post" in paths["/jobs"] and "get" in paths["/jobs"]


def test_vendored_swagger_ui_matches_the_recorded_version():
    from pathlib import Path

    import jobqueue_api

    vendor = Path(jobqueue_api.__file__).parent / "static" / "vendor"
    row = next(line for line in (vendor / "README.md").read_text().splitlines() if "`swagger-ui-dist`" in line)
    version = row.split("|")[2].strip()
    assert f'"{version}"' in (vendor / "swagger-ui" / "swagger-ui-bundle.js").read_text()
    assert (vendor / "swagger-ui" / "LICENSE").read_text().startswith(" ") or "Apache" in (
        vendor / "swagger-ui" / "LICENSE"
    ).read_text()
