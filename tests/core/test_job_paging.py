"""JobStore.page on a real Redis: filters, cursors that survive new submissions, and a page's
cost independent of how many jobs the store holds."""

from __future__ import annotations

import pytest

from jobqueue import keys
from jobqueue.connections import jobs_redis
from jobqueue.delivery import Delivery, Finish, Start
from jobqueue.jobs import Job, JobStatus, JobStore, _status_index, new_job_id
from jobqueue.settings import load_settings


@pytest.fixture
def env(redis_url):
    settings = load_settings({"REDIS_URL": redis_url})
    jobs = jobs_redis(settings)
    return settings, jobs, JobStore(jobs, settings.job_ttl_seconds), Delivery(jobs, settings)


def _run(delivery: Delivery, store: JobStore, job_id: str, status: JobStatus) -> None:
    """Take a job through the worker's scripts to a final status."""
    delivery.claim("w", 1)
    job = store.get(job_id)
    job.status = JobStatus.IN_PROGRESS
    delivery.start("w", Start(job))
    job.status = status
    delivery.record("w", Finish(job))


def _walk(store: JobStore, **filters) -> list[str]:
    seen, cursor = [], None
    while True:
        page = store.page(cursor=cursor, limit=3, **filters)
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_cursor_pages_walk_every_job_once_newest_first_with_filters(env):
    _, _, store, delivery = env
    ids = [delivery.submit("sleep" if i % 2 else "top_locations", {}).id for i in range(10)]
    for job_id in ids[:4]:  # the queue is FIFO: these four are claimed in order
        _run(delivery, store, job_id, JobStatus.COMPLETE)
    assert _walk(store) == ids[::-1]
    assert _walk(store, status="complete") == ids[:4][::-1]
    assert _walk(store, status="submitted") == ids[4:][::-1]
    assert _walk(store, operation="sleep") == ids[1::2][::-1]
    assert _walk(store, status="complete", operation="sleep") == [ids[3], ids[1]]
    assert _walk(store, status="failed") == []


def test_a_cursor_is_stable_while_new_jobs_arrive_and_statuses_change(env):
    _, _, store, delivery = env
    ids = [delivery.submit("sleep", {}).id for _ in range(6)]
    first = store.page(limit=3)
    for _ in range(5):
        delivery.submit("sleep", {})
    rest = store.page(cursor=first.next_cursor, limit=10)
    assert [j.id for j in first.jobs + rest.jobs] == ids[::-1] and rest.next_cursor is None


def _finish(store: JobStore, job_ids: list[str], status: JobStatus = JobStatus.COMPLETE) -> None:
    """Move jobs to a final status the way tools do (``JobStore.save`` keeps the status indexes)."""
    for job_id in job_ids:
        job = store.get(job_id)
        job.status = status
        store.save(job)


def _offset_page(store: JobStore, offset: int, **filters):
    page = store.page(offset=offset, limit=3, **filters)
    return [j.id for j in page.jobs], page.next_offset


def test_offset_pages_with_two_filters_neither_skip_nor_repeat_when_the_smaller_index_changes(env):
    """With status and operation the page reads the smaller of the two indexes. The offset was a
    rank in whichever was smaller on that page: when a status's index outgrew the operation's
    between pages (jobs of another operation finishing), the next page read the rank in the other
    index and skipped or repeated jobs. The offset counts the operation's index now, whichever is
    read; the sizes swap twice here, and every page is read by offset."""
    _, jobs, store, delivery = env
    sleeps, others = [], []
    for i in range(32):  # interleaved submit times: 12 sleep jobs among 20 others
        if i % 8 in (1, 3, 6):
            sleeps.append(delivery.submit("sleep", {}).id)
        else:
            others.append(delivery.submit("top_locations", {}).id)
    done = [job_id for i, job_id in enumerate(sleeps) if i % 3 != 2]  # 8 of the 12
    _finish(store, done + others[:2])
    expected = done[::-1]

    def sizes() -> tuple[int, int]:
        return jobs.zcard(keys.status_index("complete")), jobs.zcard(keys.operation_index("sleep"))

    filters = {"status": "complete", "operation": "sleep"}

    assert sizes() == (10, 12)  # the status's index is the smaller: read first
    seen, following = _offset_page(store, 0, **filters)
    _finish(store, others[2:17])
    assert sizes() == (25, 12)  # now the operation's is
    got, following = _offset_page(store, following, **filters)
    seen += got
    for job_id in others[2:17]:
        store.delete(job_id)
    assert sizes() == (10, 12)  # and the status's again
    while following is not None:
        got, following = _offset_page(store, following, **filters)
        seen += got
    assert seen == expected


def test_offset_pages_with_two_filters_repeat_at_most_the_jobs_submitted_meanwhile(env):
    """What docs/api.md promises of offsets: with two filters they count the operation's jobs, so
    new jobs of it (the newest, at the top) push the next page back by as many entries: it may
    repeat up to that many jobs and skips none. A cursor repeats none."""
    _, _, store, delivery = env
    ids = [delivery.submit("sleep", {}).id for _ in range(9)]
    _finish(store, ids)
    filters = {"status": "complete", "operation": "sleep"}
    seen, following = _offset_page(store, 0, **filters)
    new = [delivery.submit("sleep", {}).id for _ in range(2)]
    _finish(store, new)
    while following is not None:
        got, following = _offset_page(store, following, **filters)
        seen += got
    assert set(seen) == set(ids) and not set(new) & set(seen)  # none skipped (the new ones are above page 1)
    assert len(seen) - len(set(seen)) == 2 and seen[3:5] == seen[1:3]


def test_offset_pages_that_stop_between_matches_and_on_equal_submit_times_continue_exactly(env):
    """A page that stops on the scan limit ends on an entry of the index it read that the other
    filter refused, so no member of the index the offset counts: its rank is counted from the
    scores, the entries sharing its submit time by id (the order pages read them in)."""
    _, jobs, store, _ = env
    expected = []
    pipe = jobs.pipeline(transaction=False)
    for i in range(300):
        job = Job(
            id=f"{i:08x}-0000-4000-8000-000000000000",
            operation="sleep" if i % 2 or i % 40 == 0 else "top_locations",  # 158 sleep jobs
            params={},
            submitted_at=1000.0 + i // 4,  # four jobs a submit time, two of each operation
            status=JobStatus.SUBMITTED if i % 2 else JobStatus.COMPLETE,  # 150 complete: read first
        )
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
        pipe.zadd(keys.operation_index(job.operation), {job.id: job.submitted_at})
        pipe.zadd(_status_index(job.status.value), {job.id: job.submitted_at})
        if job.operation == "sleep" and job.status is JobStatus.COMPLETE:
            expected.append(job.id)
    pipe.execute()
    store.MAX_SCAN_PER_PAGE = 2  # a page reads one chunk of entries (50), with 2 or 3 matches in it
    sleeps = {job_id: score for job_id, score in jobs.zrange(keys.operation_index("sleep"), 0, -1, withscores=True)}
    seen, following, stops = [], 0, []
    while following is not None:
        page = store.page(offset=following, limit=3, status="complete", operation="sleep")
        seen += [j.id for j in page.jobs]
        following = page.next_offset
        if following is not None:
            score, _, last = page.next_cursor.partition("_")
            newer = sum(1 for i, s in sleeps.items() if (s, i) >= (float(score), last))
            stops.append((following, newer, last in sleeps, sum(s == float(score) for s in sleeps.values())))
    assert seen == expected[::-1] and len(expected) == 8
    assert [given for given, *_ in stops] == [newer for _, newer, *_ in stops]  # each the sleep jobs passed
    # pages that ended on a job of the other operation, at a submit time sleep jobs share
    assert sum(1 for *_, member, tied in stops if not member and tied) == 2


def test_equal_submit_times_do_not_lose_or_repeat_jobs(env):
    _, jobs, store, _ = env
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(7)]
    for job_id in ids:
        job = Job(id=job_id, operation="sleep", params={}, submitted_at=1000.0)
        jobs.set(keys.job(job_id), job.to_json())
        jobs.zadd(keys.JOB_INDEX, {job_id: 1000.0})
    assert sorted(_walk(store)) == ids and len(_walk(store)) == 7


def test_expired_jobs_are_pruned_from_every_index(env):
    _, jobs, store, delivery = env
    ids = [delivery.submit("sleep", {}).id for _ in range(3)]
    jobs.delete(keys.job(ids[1]))  # as if its TTL ran out
    assert [j.id for j in store.page(status="submitted").jobs] == [ids[2], ids[0]]
    assert jobs.zscore(keys.JOB_INDEX, ids[1]) is None
    assert jobs.zscore(keys.ACTIVE_INDEX, ids[1]) is None


def test_the_scripts_keep_the_status_indexes_in_step(env):
    """Jobs not final yet share one index (a start moves nothing); each final status has its own,
    written once with the job's submit time as the score, and a status filter reads the right one."""
    _, jobs, store, delivery = env
    done, cancelled, queued, running = (delivery.submit("sleep", {}).id for _ in range(4))
    _run(delivery, store, done, JobStatus.FAILED)
    assert delivery.cancel(store.get(cancelled))
    delivery.claim("w", 2)  # queued, then running
    job = store.get(running)
    job.status = JobStatus.IN_PROGRESS
    delivery.start("w", Start(job))
    members = {s.value: set(jobs.zrange(keys.status_index(s.value), 0, -1)) for s in JobStatus if s.is_final}
    assert members == {"complete": set(), "failed": {done}, "cancelled": {cancelled}}
    assert set(jobs.zrange(keys.ACTIVE_INDEX, 0, -1)) == {queued, running}
    assert jobs.zscore(keys.status_index("failed"), done) == jobs.zscore(keys.JOB_INDEX, done)
    assert [j.id for j in store.page(status="submitted").jobs] == [queued]
    assert [j.id for j in store.page(status="in-progress").jobs] == [running]
    assert [j.id for j in store.page(status="cancelled").jobs] == [cancelled]
    store.delete(done)
    assert jobs.zcard(keys.status_index("failed")) == 0 and jobs.zscore(keys.operation_index("sleep"), done) is None


def test_a_document_has_a_ttl_exactly_when_it_is_final(env):
    """The scripts' fences read a document's TTL instead of decoding it: every way of writing one
    keeps the rule."""
    _settings, jobs, store, delivery = env
    done, cancelled, queued = (delivery.submit("sleep", {}).id for _ in range(3))
    _run(delivery, store, done, JobStatus.COMPLETE)
    assert delivery.cancel(store.get(cancelled))
    saved = store.create("sleep", {})
    for job_id, final in ((done, True), (cancelled, True), (queued, False), (saved.id, False)):
        assert (jobs.ttl(keys.job(job_id)) > 0) is final, job_id
    saved.status = JobStatus.FAILED
    store.save(saved)
    assert jobs.ttl(keys.job(saved.id)) > 0


def test_bad_cursors_are_refused(env):
    store = env[2]
    for cursor in (
        "",
        "x",
        "1.5_nope",
        "nan_3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f",
        "1e999_3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f",
    ):
        with pytest.raises(ValueError):
            store.page(cursor=cursor or "_")


def test_a_filtered_page_reads_a_page_of_documents_among_100000_jobs(env):
    """The cost of a page does not grow with the store: with 100,000 jobs of which 30 failed, the
    last page of failed jobs reads about a page of documents (Redis's own hit counter), where a
    scan-and-filter listing reads all of them."""
    _, jobs, store, _ = env
    t0 = 1_700_000_000.0
    pipe = jobs.pipeline(transaction=False)
    failed = []
    for i in range(100_000):
        job = Job(
            id=f"{i:08x}-0000-4000-8000-000000000000",
            operation="sleep",
            params={},
            submitted_at=t0 + i,
            status=JobStatus.FAILED if i % 3333 == 0 else JobStatus.COMPLETE,
        )
        if job.status is JobStatus.FAILED:
            failed.append(job.id)
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
        pipe.zadd(keys.status_index(job.status.value), {job.id: job.submitted_at})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    first = store.page(status="failed", limit=20)
    hits = jobs.info("stats")["keyspace_hits"]
    last = store.page(status="failed", cursor=first.next_cursor, limit=20)
    read = jobs.info("stats")["keyspace_hits"] - hits
    assert [j.id for j in first.jobs + last.jobs] == failed[::-1] and last.next_cursor is None
    print(f"failed jobs among 100,000: {len(failed)}; keys read for the second page: {read}")
    assert read < 100


def test_submitted_since_lists_recent_ids_newest_first_and_the_api_reads_the_index_only_through_it(env):
    """The overview's recent outcomes read ``keys.JOB_INDEX`` itself; the store owns that key, so
    the API asks it (``JobStore.submitted_since``) and no API module names the key."""
    from devstack.paths import REPO_ROOT

    _, _, store, delivery = env
    made = []
    for at in (100.0, 200.0, 300.0):
        job = Job(id=new_job_id(), operation="sleep", params={"seconds": 0}, submitted_at=at)
        delivery.store([job], [])
        made.append(job.id)
    assert store.submitted_since(150.0, 10) == [made[2], made[1]]
    assert store.submitted_since(0.0, 1) == [made[2]]
    api = REPO_ROOT / "services/api/jobqueue_api"
    assert not [p.name for p in api.rglob("*.py") if "JOB_INDEX" in p.read_text()]


def test_a_page_over_many_expired_jobs_prunes_them_a_chunk_at_a_time(env, monkeypatch):
    """A listing that passes expired jobs drops their entries in one round trip per chunk it reads:
    it sent one per expired job, so the first GET /jobs after 5,000 jobs expired took 2.6 s."""
    import redis

    _, jobs, store, delivery = env
    jobs.flushdb()
    live = delivery.submit("sleep", {})
    for _ in range(600):  # older jobs whose documents have expired
        job_id = new_job_id()
        jobs.zadd(keys.JOB_INDEX, {job_id: live.submitted_at - 100})
        jobs.zadd(keys.status_index("complete"), {job_id: live.submitted_at - 100})
    sends: list[bytes] = []
    real = redis.connection.Connection.send_packed_command

    def counted(conn, command, *args, **kwargs):
        sends.append(command)
        return real(conn, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    page = store.page(limit=20)
    assert [j.id for j in page.jobs] == [live.id] and page.next_cursor is None
    assert len(sends) < 50, f"{len(sends)} round trips for one page"
    monkeypatch.undo()
    assert jobs.zcard(keys.JOB_INDEX) == 1 and jobs.zcard(keys.status_index("complete")) == 0
