"""Job routes after submission: status, listing, cancel/delete and results (JSON and PNG)."""

from __future__ import annotations

import uuid

import pytest

from jobqueue import keys
from jobqueue.connections import jobs_redis
from jobqueue.jobs import JobStatus

from .support import finish, submit

UNKNOWN = str(uuid.uuid4())
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.mark.parametrize("route", ["/status/{}", "/jobs/{}"])
def test_status_shows_the_tutorial_fields(client, route):
    job_id = submit(client, params={"seconds": 0})
    doc = client.get(route.format(job_id)).get_json()
    assert doc["job_id"] == job_id and doc["status"] == "submitted"
    assert doc["input"] == {"operation": "sleep", "params": {"seconds": 0.0}}
    assert doc["result"] is None and "result_url" not in doc


@pytest.mark.parametrize("route", ["/status/{}", "/jobs/{}", "/jobs/{}/result", "/download/{}"])
def test_unknown_and_malformed_ids(client, route):
    response = client.get(route.format(UNKNOWN))
    assert response.status_code == 404 and response.get_json()["error"] == "job_not_found"
    for bad in ["not-a-uuid", UNKNOWN.upper(), "1" * 36, "%27%20OR%201%3D1"]:
        response = client.get(route.format(bad))
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_job_id"


def test_complete_job_status_and_result(client, jobs):
    job_id = submit(client)
    finish(jobs, job_id, result={"slept": 0.0})
    doc = client.get(f"/status/{job_id}").get_json()
    assert doc["status"] == "complete" and doc["result"] == {"slept": 0.0}
    assert doc["result_url"] == f"/jobs/{job_id}/result"
    for route in (f"/jobs/{job_id}/result", f"/download/{job_id}"):
        response = client.get(route)
        assert response.status_code == 200 and response.get_json() == {"slept": 0.0}


def test_png_result_is_served_as_image(client, jobs, settings):
    job_id = submit(client)
    raw = jobs_redis(settings, decode=False)
    raw.set(keys.result(job_id), PNG)
    finish(jobs, job_id, result=None, result_ref=keys.result(job_id), result_type="image/png")
    for route in (f"/jobs/{job_id}/result", f"/download/{job_id}"):
        response = client.get(route)
        assert response.status_code == 200
        assert response.mimetype == "image/png" and response.data == PNG
        assert f"{job_id}.png" in response.headers["Content-Disposition"]
    raw.delete(keys.result(job_id))
    response = client.get(f"/download/{job_id}")
    assert response.status_code == 410 and response.get_json()["error"] == "result_expired"


@pytest.mark.parametrize(
    "status,code",
    [
        (JobStatus.FAILED, "job_failed"),
        (JobStatus.CANCELLED, "job_cancelled"),
        (JobStatus.IN_PROGRESS, "job_not_finished"),
        (JobStatus.SUBMITTED, "job_not_finished"),
    ],
)
def test_result_of_an_unfinished_or_failed_job_is_409(client, jobs, status, code):
    job_id = submit(client)
    if status is not JobStatus.SUBMITTED:
        finish(jobs, job_id, status=status, error="boom" if status is JobStatus.FAILED else None)
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 409
    doc = response.get_json()
    assert doc["error"] == code and doc["status"] == status.value
    if status is JobStatus.FAILED:
        assert "boom" in doc["message"]


def test_cancel_a_queued_job(client, queue):
    keep = submit(client)
    job_id = submit(client)
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert queue.lrange(keys.queue("jobs"), 0, -1) == [keep]
    assert client.get(f"/status/{job_id}").get_json()["status"] == "cancelled"
    # a cancelled job is final: deleting it again removes it
    assert client.delete(f"/jobs/{job_id}").get_json()["deleted"] is True
    assert client.get(f"/status/{job_id}").status_code == 404


def test_cannot_cancel_a_claimed_or_running_job(client, jobs, queue):
    job_id = submit(client)
    # a worker has claimed it (moved to its processing list) but not yet marked it in-progress
    queue.lmove(keys.queue("jobs"), keys.processing("w1"), "LEFT", "RIGHT")
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409 and response.get_json()["error"] == "job_in_progress"
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"
    finish(jobs, job_id, status=JobStatus.IN_PROGRESS)
    assert client.delete(f"/jobs/{job_id}").status_code == 409


def test_delete_finished_job_removes_document_result_and_index(client, jobs):
    job_id = submit(client)
    jobs.set(keys.result(job_id), "{}")
    finish(jobs, job_id, result=None, result_ref=keys.result(job_id))
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.get_json() == {
        "job_id": job_id,
        "status": "complete",
        "deleted": True,
    }
    assert not jobs.exists(keys.job(job_id), keys.result(job_id))
    assert jobs.zscore(keys.JOB_INDEX, job_id) is None
    assert client.delete(f"/jobs/{job_id}").status_code == 404
    assert client.delete("/jobs/nope").status_code == 400


def test_list_filters_and_pages(client, jobs):
    ids = [submit(client, params={"seconds": i / 10}) for i in range(7)]
    for job_id in ids[:3]:
        finish(jobs, job_id, result={"slept": 0})
    listing = client.get("/jobs").get_json()
    assert [j["job_id"] for j in listing["jobs"]] == ids[::-1] and listing["next_offset"] is None
    complete = client.get("/jobs?status=complete").get_json()["jobs"]
    assert sorted(j["job_id"] for j in complete) == sorted(ids[:3])
    assert client.get("/jobs?operation=top_locations").get_json()["jobs"] == []
    page1 = client.get("/jobs?limit=4").get_json()
    assert len(page1["jobs"]) == 4 and page1["next_offset"] == 4
    page2 = client.get(f"/jobs?limit=4&offset={page1['next_offset']}").get_json()
    assert [j["job_id"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1]
    assert page2["next_offset"] is None


def test_list_pages_with_a_cursor(client, jobs):
    ids = [submit(client) for _ in range(5)]
    finish(jobs, ids[0], result={"slept": 0})
    seen, url = [], "/jobs?limit=2&status=submitted"
    while True:
        page = client.get(url).get_json()
        assert "next_offset" not in page or "cursor=" not in url
        seen += [j["job_id"] for j in page["jobs"]]
        if page["next_cursor"] is None:
            break
        url = f"/jobs?limit=2&status=submitted&cursor={page['next_cursor']}"
    assert seen == ids[1:][::-1]
    job_id = ids[0]
    for cursor in ("nope", f"-1_{job_id}", f"1e3_{job_id}", f"%201_{job_id}", f"1_{job_id}x", f"nan_{job_id}"):
        bad = client.get(f"/jobs?cursor={cursor}")  # the same pattern as the spec's: no other form pages
        assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_cursor", cursor
    assert client.get(f"/jobs?cursor=1.5_{job_id}").status_code == 200


def test_list_prunes_expired_jobs_from_the_index(client, jobs):
    ids = [submit(client) for _ in range(3)]
    jobs.delete(keys.job(ids[1]))  # as if its TTL ran out
    listing = client.get("/jobs").get_json()
    assert [j["job_id"] for j in listing["jobs"]] == [ids[2], ids[0]]
    assert jobs.zscore(keys.JOB_INDEX, ids[1]) is None


@pytest.mark.parametrize(
    "query,code",
    [
        ("status=done", "invalid_status"),
        ("status=", "invalid_status"),
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=x", "invalid_limit"),
        ("offset=-1", "invalid_offset"),
        ("limit=%EF%BC%95", "invalid_limit"),  # full-width 5: int() reads it, the document's integer does not
        ("limit=%D9%A3", "invalid_limit"),  # Arabic-Indic 3
        ("offset=1_0", "invalid_offset"),  # int() reads 10
    ],
)
def test_list_rejects_bad_filters(client, query, code):
    response = client.get(f"/jobs?{query}")
    assert response.status_code == 400 and response.get_json()["error"] == code


def test_list_by_an_operation_that_does_not_exist_is_a_400_naming_them(client):
    """A typo in the filter (?operation=top_location) used to list nothing, as if no such job ran."""
    submit(client)
    for query in ("operation=top_location", "operation=other", "status=complete&operation=Sleep"):
        response = client.get(f"/jobs?{query}")
        body = response.get_json()
        assert response.status_code == 400 and body["error"] == "invalid_operation", (query, body)
        assert body["param"] == "operation" and "top_locations" in body["operations"] and "sleep" in body["operations"]
        assert "top_locations" in body["message"]
    assert client.get("/jobs?operation=").get_json()["error"] == "invalid_operation"
    assert len(client.get("/jobs?operation=sleep").get_json()["jobs"]) == 1


def test_cancel_a_job_waiting_for_its_retry(client, jobs, queue):
    """A job in the retry-backoff set is still queued, so it can be cancelled too."""
    job_id = submit(client)
    queue.lrem(keys.queue("jobs"), 1, job_id)
    queue.zadd(keys.delayed("jobs"), {job_id: 9e9})
    response = client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert queue.zcard(keys.delayed("jobs")) == 0
    assert 0 < jobs.ttl(keys.job(job_id)) <= 3600 * 24 * 7
