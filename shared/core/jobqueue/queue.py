"""The queue of job ids: a HotQueue list in the queue db.

HotQueue carries plain job ids (``serializer=None``: never its default pickle). The service itself
queues through ``jobqueue.delivery.Delivery.submit`` (document and id in one script); this wrapper
is for tutorial-style producers and consumers, which see the same list, ``hotqueue:<name>``,
that workers take from the left end of as HotQueue's own ``get`` does.
"""

from __future__ import annotations

import redis
from hotqueue import HotQueue

from . import keys, wire


class JobQueue:
    def __init__(self, client: redis.Redis, name: str):
        self.redis = client
        self.name = name
        # HotQueue builds its own Redis() from kwargs; share our pool so auth/db/timeouts match.
        self.hotqueue = HotQueue(name, serializer=None, connection_pool=client.connection_pool)
        assert self.hotqueue.key == keys.queue(name)

    @property
    def key(self) -> str:
        return keys.queue(self.name)

    def put(self, *job_ids: str) -> None:
        """RPUSH the ids, exactly what ``HotQueue.put`` sends, but never twice: after a lost answer
        (a dropped connection, a socket timeout) redis-py's retry would push them again, and each
        would run twice. Raises ``wire.Unsure`` then (a ConnectionError): they may or may not be
        queued. Do not put them again; a job stored with ``JobStore.create`` and queued nowhere is
        queued by the workers' sweeper after 60 s."""
        if job_ids:
            wire.pipelined(self.redis, [("RPUSH", self.key, *job_ids)])

    def depth(self) -> int:
        return len(self.hotqueue)
