"""The benchmark harness works end to end in a tiny configuration (no timing assertions: figures
come from ``make bench``). Runs with the test dependencies only: the raw HotQueue peer needs
nothing from the ``bench`` group; RQ/Celery/Dramatiq are exercised when that group is installed.
"""

from __future__ import annotations


import pytest

from bench import report
from bench.peers import dataset, harness, peer_classes, tutorial
from bench.peers.hotqueue_peer import HotQueuePeer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    return dataset.ensure_dataset(2_000, tmp_path_factory.mktemp("bench-data"))


def _expected_counts(path):
    frame = tutorial.load_frame(str(path))
    return {str(k): int(v) for k, v in frame["date"].value_counts().items()}


def test_generated_dataset_is_deterministic_and_tutorial_readable(small_csv, tmp_path):
    again = dataset.ensure_dataset(2_000, tmp_path)
    assert again.read_bytes() == small_csv.read_bytes()
    frame = tutorial.load_frame(str(small_csv))
    assert len(frame) == 2_000
    assert frame["Published Date"].is_monotonic_increasing


def test_raw_hotqueue_drain_steady_and_round_trip(redis_url, small_csv):
    counts = _expected_counts(small_csv)
    dates = dataset.job_dates(20)
    jobs = [("incident_count_by_date", {"date": d}) for d in dates]

    def expected(job):
        return {"incident_count": counts.get(job[1]["date"], 0)}

    peer = HotQueuePeer(redis_url, str(small_csv), 2)
    out = harness.drain_and_steady(peer, jobs, jobs[:10], expected, timeout=60)
    assert out["drain_jobs"] == 20 and out["drain_rate"] > 0
    assert out["steady_jobs"] == 10 and out["steady_rate"] > 0
    assert peer.procs == []  # workers stopped

    trips = harness.round_trips(HotQueuePeer(redis_url, str(small_csv), 1), ("sleep", {"seconds": 0}), 10, warmup=2)
    assert trips["count"] == 10 and 0 < trips["p50_ms"] <= trips["p99_ms"]


def test_wrong_answers_fail_the_run(redis_url, small_csv):
    peer = HotQueuePeer(redis_url, str(small_csv), 1)
    with pytest.raises(AssertionError, match="expected"):
        harness.drain_and_steady(peer, [("sleep", {"seconds": 0})] * 5, None, lambda job: {"slept": 1.0}, timeout=60)


@pytest.mark.parametrize("name", ["rq-simple", "celery", "dramatiq", "ours"])
def test_other_peers_drain_twenty_jobs(name, redis_url, small_csv):
    classes = peer_classes()
    if name not in classes:
        pytest.skip(f"{name} not available (peers: make bench installs the bench group; ours: needs the worker)")
    peer = classes[name](redis_url, str(small_csv), 1)
    try:
        out = harness.drain_and_steady(peer, [("sleep", {"seconds": 0})] * 20, None, None, timeout=90)
    finally:
        peer.close()
    assert out["drain_jobs"] == 20


@pytest.mark.parametrize(
    "via",
    [
        "requests",
        "http.client",
        "jobqueue.client",
        "one exchange",
        "one exchange, http.client",
        "one exchange, jobqueue.client",
    ],
)
def test_ours_round_trip_through_the_api_with_each_client(via, redis_url, small_csv):
    classes = peer_classes()
    if "ours" not in classes:
        pytest.skip("ours needs the worker")
    peer = classes["ours"](redis_url, str(small_csv), 1)
    peer.lean, peer.shipped = via.endswith("http.client"), via.endswith("jobqueue.client")
    peer.one = via.startswith("one exchange")
    try:
        trips = harness.round_trips(peer, ("sleep", {"seconds": 0}), 5, warmup=1)
    finally:
        peer.close()
    assert trips["count"] == 5 and 0 < trips["p50_ms"] <= trips["p99_ms"]
    if not peer.one:  # two requests: the submit's share is measured apart
        assert 0 < trips["submit_p50_ms"] < trips["p50_ms"]


def test_report_sections_are_replaced_in_place(tmp_path):
    doc = tmp_path / "benchmarks.md"
    report.write_section("analysis", "## Analysis operations\n\nfirst", doc)
    report.write_section("peers", "## Peers\n\nfigures-v1", doc)
    report.write_section("peers", "## Peers\n\nfigures-v2", doc)
    text = doc.read_text()
    assert "figures-v1" not in text and "figures-v2" in text and "first" in text
    assert text.index("## Peers") < text.index("## Analysis operations")  # canonical order
    assert report.read_section("analysis", doc).endswith("first")


def test_report_keeps_text_it_does_not_own(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n## API\n\napi figures\n\n"
        "## Worker drain\n<!-- worker-drain:start -->\nraw 1.00x\n<!-- worker-drain:end -->\n"
    )
    report.write_section("peers", "## Peers\n\nfigures", doc)
    report.write_section("peers", "## Peers\n\nfigures again", doc)
    report.write_section("zz-extra", "## Extra\n\nlast", doc)
    text = doc.read_text()
    assert "<!-- worker-drain:start -->\nraw 1.00x\n<!-- worker-drain:end -->" in text
    assert text.count("## Peers") == 1 and "figures again" in text
    assert text.index("## Peers") < text.index("## API")  # peers come before the others' sections
    # a script that rewrites "from its heading to the next heading" leaves our markers intact
    start = text.index("## API\n")
    end = text.index("\n## ", start + 1)
    text = text[:start] + "## API\n\nnew api figures\n" + text[end + 1 :]
    doc.write_text(text)
    report.write_section("zz-extra", "## Extra\n\nlast again", doc)
    assert doc.read_text().count("## Extra") == 1 and "last again" in doc.read_text()


def test_intro_written_first_is_not_doubled(tmp_path):
    doc = tmp_path / "benchmarks.md"
    for _ in range(2):
        report.write_section("intro", "# Benchmarks\n" + report.INTRO, doc)
        report.write_section("peers", "## Peers\n\nx", doc)
    text = doc.read_text()
    assert text.count("<!-- bench:intro -->") == 1 and text.startswith("# Benchmarks\n")
    assert text.count("## Peers") == 1
