"""The queue of job ids: a HotQueue list in the queue db.

HotQueue carries plain job ids (``serializer=None``: never its default pickle). Producers use
:meth:`JobQueue.put`; the worker's claim/ack/lease logic (at-least-once delivery) works on the same
list, ``hotqueue:<name>``, taking from the left end as HotQueue's own ``get`` does.
"""

from __future__ import annotations

import redis
from hotqueue import HotQueue

from . import keys


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
        self.hotqueue.put(*job_ids)

    def depth(self) -> int:
        return len(self.hotqueue)
