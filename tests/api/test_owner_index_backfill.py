"""Jobs stored before the per-user index (``jobs:by-owner:<name>``) existed are listed again after
``jobqueue backfill-owner-index`` (docs/deployment.md's upgrade notes), run while the API serves.

Jobs "the old way": submitted through the real API with named tokens, then their user's index
deleted, which leaves what the release before the index left (documents with their ``owner``, in
the other indexes, in no per-user one). A real redis-server and gunicorn; the command as an
instructor runs it (a subprocess with the services' REDIS_URL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from jobqueue import keys

from .support import redis_and_api
from .test_owner_index import ADMIN, TOKENS, _as, _submit

JOBQUEUE = str(Path(sys.executable).with_name("jobqueue"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    named = ",".join(f"{who}:{token}" for who, token in TOKENS.items())
    with redis_and_api(
        tmp_path_factory.mktemp("owner-backfill"), API_TOKEN=ADMIN, API_TOKENS=named, SUBMIT_RATE_LIMIT="0"
    ) as (server, api):
        yield api.url, server


def _listed(session: requests.Session, url: str, who: str) -> list[str]:
    seen: list[str] = []
    cursor: dict = {}
    while True:
        response = session.get(url + "/jobs", params={"limit": 100, **cursor}, headers=_as(who))
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [job["job_id"] for job in body["jobs"]]
        if body["next_cursor"] is None:
            return seen
        cursor = {"cursor": body["next_cursor"]}


def _backfill(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATA_"))}
    return subprocess.run(
        [JOBQUEUE, "backfill-owner-index", *args],
        env={**env, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_jobs_from_before_the_index_are_listed_again_after_the_backfill(served):
    url, server = served
    client = server.client()
    with requests.Session() as session:
        old = {"alice": _submit(session, url, "alice", 230), "bob": _submit(session, url, "bob", 7)}
        anonymous = _submit(session, url, "admin", 5)  # the admin's jobs have no owner: no index
        client.delete(keys.owner_index("alice"), keys.owner_index("bob"))  # as the release before left them
        client.set(keys.job("not-json"), "{truncated")  # a document nobody can read is left alone
        assert _listed(session, url, "alice") == [] and _listed(session, url, "bob") == []

        # --batch 50: several SCAN steps, with a submit between runs (the service keeps running)
        done = _backfill(server.url, "--batch", "50")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report == {
            "scanned": 230 + 7 + 5 + 1,
            "owned": 237,
            "added": 237,
            "unreadable": 1,
            "owners": 2,
        }, report
        new = _submit(session, url, "alice", 3)
        listed = _listed(session, url, "alice")
        assert len(listed) == 233 and set(listed) == set(old["alice"] + new)
        assert listed[:3] == list(reversed(new))  # newest first: the old ones scored by their submit time
        assert sorted(_listed(session, url, "bob")) == sorted(old["bob"])
        assert not set(anonymous) & set(_listed(session, url, "alice") + _listed(session, url, "bob"))
        scores = dict(client.zrange(keys.owner_index("bob"), 0, -1, withscores=True))
        for job_id in old["bob"]:
            assert scores[job_id] == json.loads(client.get(keys.job(job_id)))["submitted_at"]

        again = _backfill(server.url)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["added"] == 0  # idempotent
        assert client.zcard(keys.owner_index("alice")) == 233


def test_unreachable_redis_exits_3_naming_it():
    done = _backfill("redis://127.0.0.1:1")
    assert done.returncode == 3 and "run it again" in done.stderr, done.stderr


def test_a_refused_password_exits_3_saying_what_to_fix(tmp_path):
    """A wrong password is not Redis being away: "run it again when Redis answers" sent the operator
    waiting; now the message names the settings to fix."""
    from devstack.redis_server import RedisServer, find_redis_server

    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    locked = RedisServer(tmp_path / "redis", password="s3cret", appendonly=False).start()
    try:
        done = _backfill(f"redis://:not-its-pw@127.0.0.1:{locked.port}")
        assert done.returncode == 3, done.stderr
        assert "credentials" in done.stderr and "fix REDIS_URL / REDIS_PASSWORD" in done.stderr, done.stderr
        assert "not-its-pw" not in done.stderr, done.stderr
    finally:
        locked.stop()
