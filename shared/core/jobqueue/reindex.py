"""``jobqueue backfill-owner-index``: put jobs stored before the per-user index existed into it.

A release before ``jobs:by-owner:<name>`` (:func:`keys.owner_index`) stored each named token's jobs
with their ``owner`` in the document but in no per-user index, so after the upgrade a student's
``GET /jobs`` lists only jobs submitted since. This walks the job documents with SCAN (never KEYS:
one batch at a time, Redis keeps serving between batches), reads each batch with one MGET, and adds
every owned job to its owner's index with ZADD NX at its submitted time, the score the submit itself
writes. Run it once after the rollout, while the service runs; running it again adds nothing.

Safe beside the running service: a submit indexes its own job (NX keeps its entry as it is), and a
job deleted or expired between the MGET and the ZADD leaves an entry without a document, which the
listing prunes when it passes it (:meth:`JobStore.page`), as it prunes entries of expired jobs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from . import keys


@dataclass
class Backfill:
    scanned: int = 0  # job documents read
    owned: int = 0  # of those, jobs a named token submitted
    added: int = 0  # index entries that were missing and are now there
    unreadable: int = 0  # documents that are not a job's JSON (left alone)
    owners: int = 0  # distinct owners seen

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def backfill_owner_index(client: redis.Redis, batch: int = 500) -> Backfill:
    """Add every owned job document of the jobs db (``client``) to its owner's index, SCANning
    ``batch`` keys at a time (SCAN's COUNT hint)."""
    done = Backfill()
    owners: set[str] = set()
    cursor = 0
    while True:
        cursor, names = client.scan(cursor, match=f"{keys.JOB_PREFIX}*", count=batch)
        if names:
            by_owner: dict[str, dict[str, float]] = {}
            for name, raw in zip(names, client.mget(names)):
                if raw is None:  # expired or deleted since the SCAN
                    continue
                done.scanned += 1
                try:
                    doc = json.loads(raw)
                    owner, submitted = doc.get("owner"), float(doc["submitted_at"])
                except (ValueError, TypeError, KeyError, AttributeError):
                    done.unreadable += 1
                    continue
                if not isinstance(owner, str) or not owner:  # tokenless or the admin's: no index
                    continue
                job_id = (name.decode() if isinstance(name, bytes) else name)[len(keys.JOB_PREFIX) :]
                by_owner.setdefault(owner, {})[job_id] = submitted
                done.owned += 1
            if by_owner:
                pipe = client.pipeline(transaction=False)
                for owner, entries in by_owner.items():
                    pipe.zadd(keys.owner_index(owner), entries, nx=True)
                done.added += sum(pipe.execute())
                owners.update(by_owner)
        if int(cursor) == 0:
            break
    done.owners = len(owners)
    return done
