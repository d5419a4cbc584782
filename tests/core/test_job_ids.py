"""Job ids and stored documents: what the submit path writes must be what every reader accepts.

``new_job_id`` formats random bytes itself (not through ``uuid.UUID``) and ``Job.to_json`` uses
one encoder made once; both must write exactly what the standard library's way wrote.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

from jobqueue.jobs import JOB_ID_RE, Job, JobStatus, is_valid_job_id, new_job_id


def test_a_new_id_is_a_canonical_random_uuid_every_reader_accepts():
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == job_id  # canonical: lowercase, hyphens where uuid puts them
        assert is_valid_job_id(job_id) and JOB_ID_RE.fullmatch(job_id)


def test_every_random_digit_of_a_new_id_varies():
    """30 hex digits are random (the version digit is 4, the variant digit one of 89ab): each
    position takes many values over many ids, so no digit is stuck or copied from another."""
    ids = [new_job_id().replace("-", "") for _ in range(2000)]
    for position in range(32):
        seen = Counter(job_id[position] for job_id in ids)
        if position == 12:
            assert set(seen) == {"4"}
        elif position == 16:
            assert set(seen) == set("89ab")
        else:
            assert len(seen) == 16, (position, seen)


def test_the_stored_document_is_what_json_dumps_writes():
    job = Job(
        id=new_job_id(),
        operation="top_locations",
        params={"n": 5, "road": "Ünïcode \u2028"},
        status=JobStatus.IN_PROGRESS,
        submitted_at=1.5,
        owner="alice",
    )
    doc = dict(job.__dict__, status="in-progress")
    assert job.to_json() == json.dumps(doc, separators=(",", ":"), allow_nan=False)
    assert Job.from_json(job.to_json()) == job


def test_a_document_with_nan_is_refused_as_before():
    job = Job(id=new_job_id(), operation="x", params={"v": float("nan")})
    try:
        job.to_json()
    except ValueError:
        return
    raise AssertionError("NaN written into a stored document")
