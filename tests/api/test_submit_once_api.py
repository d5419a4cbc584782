"""POST /submit when Redis's answer is lost, as a user configures it: REDIS_URL with a
``socket_timeout``, the real app on a real redis-server, a TCP proxy between them that loses one
answer (tests/support/lossy_proxy.py). The job is answered 202 and queued once; with the rate
limit on, a lost answer to its count does not count the client twice (redis-py's retry re-sent the
transaction, and the INCRBY, before)."""

from __future__ import annotations

import pytest

from jobqueue import keys

from tests.support.lossy_proxy import LossyProxy
from tests.support.rate_window import start_counting_with

from .support import make_settings


@pytest.fixture
def lossy(redis_server, redis_url):
    proxies = []

    def make(mode: str, **watch: str) -> LossyProxy:
        proxies.append(LossyProxy(redis_server.port, mode, **watch))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def _app(url: str, **env: str):
    from jobqueue_api import create_app

    return create_app(make_settings(f"{url}?socket_timeout=0.5", **env), load_data=False).test_client()


def _post(client):
    return client.post("/submit", json={"operation": "sleep"}, environ_base={"REMOTE_ADDR": "10.0.0.7"})


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_submit_whose_answer_is_lost_is_queued_once(lossy, redis_server, mode):
    proxy = lossy(mode)
    client = _app(proxy.url)
    assert _post(client).status_code == 202  # connections made, the script loaded
    proxy.arm()
    response = _post(client)
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    queued = redis_server.client(1).lrange(keys.queue("jobs"), 0, -1)
    assert queued.count(job_id) == 1, f"queued {queued.count(job_id)} times"
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_count_whose_answer_is_lost_counts_the_client_once(lossy, redis_server, mode):
    proxy = lossy(mode, trigger="INCRBY", last="EXPIRE")
    client = _app(proxy.url, SUBMIT_RATE_LIMIT="5")
    start_counting_with(5)  # six submits, one of them waiting out a 0.5 s timeout
    proxy.arm()
    response = _post(client)
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert response.status_code == 202, response.get_json()
    counters = [k for k in redis_server.client(0).keys("*") if "10.0.0.7" in k]
    assert len(counters) == 1 and int(redis_server.client(0).get(counters[0])) == 1, "the client counted twice"
    # and the limit still holds: four more, then 429
    assert [_post(client).status_code for _ in range(5)] == [202] * 4 + [429]


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_cancel_whose_answer_is_lost_still_says_cancelled(lossy, redis_server, mode):
    """The same retry re-sent a cancel that had applied: the second found the id gone from the
    queue and the API answered 409 "a worker has already claimed this job" for a job it had just
    cancelled."""
    proxy = lossy(mode, trigger="cancel", last="cancel")
    client = _app(proxy.url)
    job_id = _post(client).get_json()["job_id"]
    client.get("/queue")  # the script loaded (the lost call must be the cancel, not a NOSCRIPT)
    proxy.arm()
    response = client.delete(f"/jobs/{job_id}")
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert response.status_code == 200 and response.get_json()["cancelled"] is True, response.get_json()
    assert client.get(f"/status/{job_id}").get_json()["status"] == "cancelled"
    assert redis_server.client(1).llen(keys.queue("jobs")) == 0
