"""The API's one-script submit writes HotQueue's own wire format, so HotQueue code can consume it."""

from __future__ import annotations

from hotqueue import HotQueue

from jobqueue.queue import JobQueue


def test_submitted_ids_are_readable_by_a_plain_hotqueue_consumer(client, settings, redis_server):
    ids = [
        client.post("/submit", json={"operation": "sleep", "params": {"seconds": 0}}).get_json()["job_id"]
        for _ in range(3)
    ]
    consumer = HotQueue(
        settings.queue_name,
        serializer=None,
        host="127.0.0.1",
        port=redis_server.port,
        db=settings.redis_queue_db,
        decode_responses=True,
    )
    assert [consumer.get() for _ in ids] == ids  # FIFO, plain ids, no pickle framing
    assert consumer.get() is None


def test_hotqueue_put_and_api_submit_share_one_queue(client, settings):
    from jobqueue.connections import queue_redis

    queue = JobQueue(queue_redis(settings), settings.queue_name)
    queue.put("x-from-hotqueue")
    client.post("/submit", json={"operation": "sleep", "params": {}})
    assert queue.depth() == 2
