"""A named token's listing reads its own index (``keys.owner_index``), not everyone's jobs.

Before: with ``API_TOKENS`` a user's ``GET /jobs`` (the web page's table, ``jobqueue jobs``) read at
most 20 pages of everyone's newest jobs filtered by owner, so after alice submitted 500 jobs bob's
listing came back with 0 jobs. Through the real API (gunicorn) on a real redis-server.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from jobqueue import keys

from .support import app_counting_flask, redis_and_api

TOKENS = {"alice": "alice-secret-token", "bob": "bob-secret-token", "carol": "carol-secret-token"}
ADMIN = "admin-secret-token"
SLEEP = {"operation": "sleep", "params": {"seconds": 0}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(API url, jobs-db client) of an API with three students and an admin token."""
    named = ",".join(f"{who}:{token}" for who, token in TOKENS.items())
    with redis_and_api(
        tmp_path_factory.mktemp("owner-index"), API_TOKEN=ADMIN, API_TOKENS=named, SUBMIT_RATE_LIMIT="0"
    ) as (server, api):
        yield api.url, server.client()


def _as(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.get(who, ADMIN)}"}


def _submit(session: requests.Session, url: str, who: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        response = session.post(url + "/submit", json=SLEEP, headers=_as(who))
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


def _listing(session: requests.Session, url: str, who: str, **params) -> dict:
    response = session.get(url + "/jobs", params=params, headers=_as(who))
    assert response.status_code == 200, response.text
    return response.json()


def _all_pages(session, url, who, by_offset=False, **params) -> list[str]:
    """Every id of a listing, page by page (by cursor, or by offset)."""
    seen: list[str] = []
    position: dict = {}
    for _ in range(1000):
        body = _listing(session, url, who, **params, **position)
        seen += [job["job_id"] for job in body["jobs"]]
        following = body.get("next_offset") if by_offset else body["next_cursor"]
        if following is None:
            return seen
        position = {"offset": following} if by_offset else {"cursor": following}
    raise AssertionError("the listing never ended")


@pytest.fixture(scope="module")
def busy_class(served):
    """carol and bob submit a few jobs, then alice 500: the reproduction."""
    url, _ = served
    with requests.Session() as session:
        carol = _submit(session, url, "carol", 12)
        bob = _submit(session, url, "bob", 4)
        alice = _submit(session, url, "alice", 500)
    return {"alice": alice, "bob": bob, "carol": carol}


def test_a_students_jobs_are_on_the_first_page_however_busy_the_class(served, busy_class):
    url, _ = served
    with requests.Session() as s:
        bob = _listing(s, url, "bob")
        assert [j["job_id"] for j in bob["jobs"]] == busy_class["bob"][::-1]  # before: count 0
        assert bob["count"] == 4 and bob["next_cursor"] is None
        assert [j["job_id"] for j in _listing(s, url, "bob", limit=5)["jobs"]] == busy_class["bob"][::-1]
        carol = _listing(s, url, "carol", limit=10)
        assert [j["job_id"] for j in carol["jobs"]] == busy_class["carol"][::-1][:10]
        assert carol["next_cursor"] is not None and carol["next_offset"] == 10
        assert {j["owner"] for j in _listing(s, url, "alice", limit=100)["jobs"]} == {"alice"}
        # the other filters still apply on a user's own index
        assert _listing(s, url, "bob", status="submitted")["count"] == 4
        assert _listing(s, url, "bob", status="complete")["count"] == 0
        assert _listing(s, url, "bob", operation="sleep", status="submitted")["count"] == 4


def test_the_cli_lists_a_students_jobs_however_busy_the_class(served, busy_class, capsys):
    """``jobqueue jobs`` as carol printed "no jobs" in the reproduction."""
    from jobqueue.cli import main

    url, _ = served
    assert main(["jobs", "--url", url, "--token", TOKENS["carol"], "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["job_id"] for j in listed["jobs"]] == busy_class["carol"][::-1]


def test_paging_through_a_users_jobs_returns_each_exactly_once(served, busy_class):
    url, jobs = served
    with requests.Session() as s:
        by_cursor = _all_pages(s, url, "alice", limit=37)
        by_offset = _all_pages(s, url, "alice", by_offset=True, limit=41)
        carol = _all_pages(s, url, "carol", limit=5)
    assert by_cursor == busy_class["alice"][::-1]  # newest first, none repeated, none skipped
    assert by_offset == by_cursor
    assert carol == busy_class["carol"][::-1]
    assert jobs.zcard(keys.owner_index("alice")) == 500


def test_the_admin_lists_one_students_jobs_from_their_index(served, busy_class):
    url, _ = served
    with requests.Session() as s:
        assert _all_pages(s, url, "admin", owner="carol", limit=7) == busy_class["carol"][::-1]
        assert [j["job_id"] for j in _listing(s, url, "admin", owner="bob")["jobs"]] == busy_class["bob"][::-1]
        assert _listing(s, url, "admin", owner="nobody")["count"] == 0  # an unknown name: nothing
        assert _listing(s, url, "bob", owner="carol")["count"] == 0  # a student asking for another's
        assert _listing(s, url, "bob", owner="bob")["count"] == 4
        everyone = _listing(s, url, "admin", limit=100)  # the admin's own listing is not filtered
        assert everyone["count"] == 100 and {j["owner"] for j in everyone["jobs"]} == {"alice"}


def test_delete_and_expiry_leave_the_users_index_clean(served):
    url, jobs = served
    with requests.Session() as s:
        cancelled, expiring, kept = _submit(s, url, "bob", 3)
        index = keys.owner_index("bob")
        assert jobs.zscore(index, cancelled) is not None
        assert s.delete(f"{url}/jobs/{cancelled}", headers=_as("bob")).json()["cancelled"] is True
        assert s.delete(f"{url}/jobs/{cancelled}", headers=_as("bob")).json()["deleted"] is True
        assert jobs.zscore(index, cancelled) is None

        jobs.pexpire(keys.job(expiring), 1)  # what the document's TTL does once it is final
        time.sleep(0.05)
        listed = [j["job_id"] for j in _listing(s, url, "bob")["jobs"]]
        assert kept in listed and expiring not in listed and cancelled not in listed
        assert jobs.zscore(index, expiring) is None  # pruned as the listing passed it
        assert jobs.zscore(keys.JOB_INDEX, expiring) is None
        assert s.delete(f"{url}/jobs/{kept}", headers=_as("admin")).json()["cancelled"] is True
        assert s.delete(f"{url}/jobs/{kept}", headers=_as("admin")).json()["deleted"] is True
        assert jobs.zscore(index, kept) is None


def _calls(jobs) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): s["calls"] for name, s in jobs.info("commandstats").items()}


def test_without_named_tokens_the_index_costs_nothing(redis_url, jobs):
    """A tokenless submit is the same transaction as before (three index ZADDs, none per owner), and
    a listing reads the one index of everyone's jobs; with a named token, one ZADD more."""
    app, _ = app_counting_flask(redis_url)
    client = app.test_client()
    client.post("/submit", json=SLEEP)  # the first request decides the fast path's eligibility
    jobs.config_resetstat()
    for _ in range(3):
        assert client.post("/submit", json=SLEEP).status_code == 202
    plain = _calls(jobs)
    assert plain.get("exec") == 3 and plain.get("zadd") == 3 * 3, plain
    jobs.config_resetstat()
    assert client.get("/jobs").get_json()["count"] == 4
    listed = _calls(jobs)
    assert "zcard" not in listed and listed.get("zrevrange") == 1, listed
    assert not jobs.keys(keys.OWNER_INDEX_PREFIX + "*")

    named, _ = app_counting_flask(redis_url, API_TOKENS=f"alice:{TOKENS['alice']}")
    jobs.config_resetstat()
    assert named.test_client().post("/submit", json=SLEEP, headers=_as("alice")).status_code == 202
    owned = _calls(jobs)
    assert owned.get("exec") == 1 and owned.get("zadd") == 3 + 1, owned
    assert jobs.zcard(keys.owner_index("alice")) == 1
