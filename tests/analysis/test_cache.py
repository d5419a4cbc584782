"""The parsed-data cache as the chart uses it: the loader builds it beside the data, readers map it
read-only and never write, versions live side by side through a rolling upgrade, a reload (new
content) never meets a stale cache, and the worker's wait-for-data knows when to stop waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from atx_analysis import cache as cache_module
from atx_analysis import dataset as dataset_module
from atx_analysis.cache import CACHE_VERSION, DataCache, wait_until_ready
from atx_analysis.dataset import content_hash, load_dataset

from devstack.paths import SAMPLE

from .expected import FIXTURES


def _listing(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture
def volume(tmp_path, inproc, monkeypatch):
    """A data volume filled by the loader as the chart runs it: `jobqueue data fetch --from ... --keep-existing`."""
    data, cache = tmp_path / "pvc" / "traffic_incidents.csv", tmp_path / "pvc" / "cache"
    monkeypatch.setenv("DATA_CACHE_DIR", str(cache))
    monkeypatch.setenv("DATA_CACHE_MODE", "readwrite")
    code, out, err = inproc("data", "fetch", "--from", FIXTURES / "portal10.csv", "--output", data, "--keep-existing")
    assert code == 0, err
    return data, cache, json.loads(out)


def test_the_loader_caches_under_the_data_files_name_and_remembers_its_identity(volume):
    data, cache, report = volume
    identity = content_hash(data)
    assert report["cache"] == str(cache / f"traffic_incidents.csv.{identity[:20]}.v{CACHE_VERSION}.arrow")
    # the check parsed a temporary download; nothing of that temporary name is left
    assert sorted(_listing(cache)) == [
        f"traffic_incidents.csv.{identity[:20]}.v{CACHE_VERSION}.arrow",
        "traffic_incidents.csv.identity.json",
    ]
    memo = json.loads((cache / "traffic_incidents.csv.identity.json").read_text())
    assert memo["sha256"] == identity and memo["loader_version"] == CACHE_VERSION
    assert DataCache.of(data, str(cache), "readonly").ready(data) == cache / report["cache"].rsplit("/", 1)[1]


def test_a_reader_in_readonly_mode_maps_the_cache_and_never_writes(volume, caplog):
    data, cache, _ = volume
    before = _listing(cache)
    ds = load_dataset(data, cache_dir=str(cache), cache_mode="readonly")
    assert ds.from_cache and ds.cache_file and ds.identity == content_hash(data)
    data.touch()  # memo now stale: hashed again, still not written
    ds = load_dataset(data, cache_dir=str(cache), cache_mode="readonly")
    assert ds.from_cache
    assert _listing(cache) == before


# pyarrow's CSV, Parquet and compute modules cost each worker process about 7 MB of its own memory
# (issue 13's target: an extra worker adds at most 25% of the first one's RSS); a worker mapping the
# cache reads no file format, so it must not import them (a path check in the readers' module did)
PARSE_ONLY_MODULES = ("pyarrow.csv", "pyarrow.parquet", "pyarrow.compute", "pandas")


def test_a_worker_mapping_the_cache_imports_no_parser(volume):
    data, cache, _ = volume
    probe = (
        "import sys\n"
        "from jobqueue.settings import load_settings\n"
        "from jobqueue_worker.data import DataSource\n"
        "settings = load_settings()\n"
        "ds = DataSource(settings.data_path, **settings.data_options()).get().warm()\n"
        f"print(ds.from_cache, [m for m in {PARSE_ONLY_MODULES!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "DATA_PATH": str(data), "DATA_CACHE_DIR": str(cache), "DATA_CACHE_MODE": "readonly"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]"]


def test_readonly_without_a_cache_parses_in_memory_with_a_warning(tmp_path, caplog):
    cache = tmp_path / "cache"
    ds = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache), cache_mode="readonly")
    assert ds.rows == 8 and not ds.from_cache and ds.cache_file is None
    assert not cache.exists(), "a readonly reader created its cache directory"
    assert any("parsing it in memory" in r.getMessage() for r in caplog.records)


def test_off_never_reads_nor_writes(volume):
    data, cache, _ = volume
    before = _listing(cache)
    ds = load_dataset(data, cache_dir=str(cache), cache_mode="off")
    assert not ds.from_cache and _listing(cache) == before


def test_a_new_format_version_and_the_old_one_live_side_by_side(volume, monkeypatch, inproc):
    """A rolling upgrade: the new loader builds its version; the old pods still find theirs."""
    data, cache, first = volume
    old_file = first["cache"]
    monkeypatch.setattr(cache_module, "CACHE_VERSION", CACHE_VERSION + 1)
    code, out, err = inproc("data", "fetch", "--from", FIXTURES / "portal10.csv", "--output", data, "--keep-existing")
    assert code == 0, err
    new_file = json.loads(out)["cache"]
    assert new_file.endswith(f".v{CACHE_VERSION + 1}.arrow") and (cache / new_file.rsplit("/", 1)[1]).exists()
    assert (cache / old_file.rsplit("/", 1)[1]).exists(), "the old pods' cache was removed during the upgrade"
    assert load_dataset(data, cache_dir=str(cache), cache_mode="readonly").cache_file == new_file
    monkeypatch.setattr(cache_module, "CACHE_VERSION", CACHE_VERSION)
    assert load_dataset(data, cache_dir=str(cache), cache_mode="readonly").cache_file == old_file
    # two versions on: the oldest goes
    monkeypatch.setattr(cache_module, "CACHE_VERSION", CACHE_VERSION + 2)
    assert inproc("data", "fetch", "--from", FIXTURES / "portal10.csv", "--output", data, "--keep-existing")[0] == 0
    assert not (cache / old_file.rsplit("/", 1)[1]).exists()
    assert (cache / new_file.rsplit("/", 1)[1]).exists()


def test_a_cache_of_another_version_inside_the_right_name_is_not_read(volume, monkeypatch):
    data, cache, report = volume
    monkeypatch.setattr(cache_module, "CACHE_VERSION", CACHE_VERSION + 1)
    (cache / report["cache"].rsplit("/", 1)[1]).rename(
        DataCache.of(data, str(cache)).file(data.name, content_hash(data))
    )
    ds = load_dataset(data, cache_dir=str(cache), cache_mode="readonly")
    assert not ds.from_cache, "a cache written by another format version was mapped"


def test_a_reload_replaces_the_old_contents_cache(volume, inproc):
    data, cache, first = volume
    other = cache.parent / "other.csv"  # another dataset in the same cache directory: left alone
    load_dataset(SAMPLE, cache_dir=str(cache), name=other.name)
    code, out, err = inproc("data", "fetch", "--from", SAMPLE, "--output", data)  # force: a new dataset
    assert code == 0, err
    report = json.loads(out)
    assert report["cache_removed"] == [first["cache"].rsplit("/", 1)[1]]
    ds = load_dataset(data, cache_dir=str(cache), cache_mode="readonly")
    assert ds.from_cache and ds.identity == content_hash(SAMPLE) and ds.cache_file == report["cache"]
    assert [p for p in cache.iterdir() if p.name.startswith("other.csv.")], "another dataset's cache was pruned"


def test_an_edited_file_leaves_no_cache_of_its_old_content(tmp_path):
    """make up (readwrite) on a data file edited between starts left one cache per content beside
    it, each as big as the parsed columns (68 MB for the full file), for good."""
    data, cache = tmp_path / "incidents.csv", tmp_path / "cache"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    other = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache)).cache_file  # another name: stays
    files = []
    for rows in (100, 200, 300):
        data.write_text("".join(lines[: rows + 1]), encoding="utf-8")
        ds = load_dataset(data, cache_dir=str(cache))
        assert ds.rows == rows and ds.cache_file
        files.append(ds.cache_file)
    assert sorted(p.name for p in cache.glob("incidents.csv.*.arrow")) == [files[-1].rsplit("/", 1)[1]]
    assert other and (cache / other.rsplit("/", 1)[1]).exists()
    assert load_dataset(data, cache_dir=str(cache)).from_cache


def test_a_kept_file_that_does_not_load_keeps_the_loader_going(tmp_path, inproc):
    data = tmp_path / "d.csv"
    data.write_text("edited by hand\n")
    code, out, err = inproc("data", "fetch", "--from", SAMPLE, "--output", data, "--keep-existing")
    assert code == 0 and json.loads(out)["cache"] is None and "not a usable dataset" in err
    assert data.read_text() == "edited by hand\n"


def test_wait_returns_the_cache_once_the_loader_has_built_it(tmp_path):
    data, cache = tmp_path / "d.csv", tmp_path / "cache"
    lines: list[str] = []

    def loader():
        time.sleep(0.3)
        data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
        time.sleep(0.3)
        ds = load_dataset(data, cache_dir=str(cache))
        DataCache.of(data, str(cache)).remember(data, ds.identity, loaded=True)

    thread = threading.Thread(target=loader)
    thread.start()
    found = wait_until_ready(data, str(cache), timeout=30, poll=0.05, say=lines.append)
    thread.join()
    assert found is not None and found.name.endswith(f".v{CACHE_VERSION}.arrow")
    assert lines[0].startswith("waiting for") and any(line.startswith("found its parsed cache") for line in lines)


def test_wait_stops_when_the_loader_left_no_cache_or_after_the_timeout(tmp_path):
    data, cache = tmp_path / "d.csv", tmp_path / "cache"
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    started = time.monotonic()
    assert wait_until_ready(data, str(cache), timeout=0.3, poll=0.05, say=lambda _: None) is None
    assert time.monotonic() - started >= 0.3
    DataCache.of(data, str(cache)).remember(data, content_hash(data), loaded=True)  # e.g. the volume was full
    lines: list[str] = []
    assert wait_until_ready(data, str(cache), timeout=60, poll=0.05, say=lines.append) is None
    assert "left no parsed cache" in lines[-1]


def test_dataset_module_reads_the_version_at_call_time(monkeypatch, tmp_path):
    """The rolling-upgrade tests above patch one constant; the loader must not have a copy of its own."""
    monkeypatch.setattr(cache_module, "CACHE_VERSION", 999)
    ds = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(tmp_path / "c"))
    assert ds.cache_file.endswith(".v999.arrow")
    assert load_dataset(FIXTURES / "portal10.csv", cache_dir=str(tmp_path / "c")).from_cache
    assert dataset_module.CACHE_VERSION == CACHE_VERSION  # re-exported name kept for callers


NEEDLES = ["CONGRESS", "s congress ave", "ST", "\n", "\0", "", "Ä", "ß", "1000-1099", "/", "X" * 399, "ZZZ-NOWHERE"]


@pytest.mark.parametrize("source", [SAMPLE, FIXTURES / "portal10.csv"])
def test_the_mapped_per_address_arrays_answer_as_the_parsed_ones(tmp_path, source):
    """Addresses, road codes and the road search's haystack are read from the mapped cache (not
    rebuilt as Python strings in each process): every answer is the one the parsed data gives."""
    parsed = load_dataset(source, cache=False)
    load_dataset(source, cache_dir=str(tmp_path))
    mapped = load_dataset(source, cache_dir=str(tmp_path), cache_mode="readonly")
    assert mapped.from_cache and mapped.columns.address_haystack is not None
    assert not isinstance(mapped.columns.categories["address"], list)
    assert list(mapped.columns.categories["address"]) == list(parsed.columns.categories["address"])
    assert mapped.columns.categories["address"][-1] == parsed.columns.categories["address"][-1]
    assert (mapped.columns.address_road == parsed.columns.address_road).all()
    for needle in NEEDLES:
        assert (mapped.index.road_matches(needle) == parsed.index.road_matches(needle)).all(), needle
        assert mapped.index.road_count(needle) == parsed.index.road_count(needle), needle
    assert mapped.index.top_locations(10) == parsed.index.top_locations(10)
    assert mapped.index.road_counts == parsed.index.road_counts
    assert mapped.frame.equals(parsed.frame)


def test_non_ascii_addresses_survive_the_mapped_haystack(tmp_path):
    data = tmp_path / "d.csv"
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    # folding changes the byte length of some names ("K" Kelvin sign -> "k"): the stored starts must follow
    data.write_text(
        "\n".join([lines[0]] + [line.replace("CONGRESS", "STRAßE Ñandú \u212a") for line in lines[1:]]) + "\n"
    )
    parsed = load_dataset(data, cache=False)
    load_dataset(data, cache_dir=str(tmp_path / "c"))
    mapped = load_dataset(data, cache_dir=str(tmp_path / "c"), cache_mode="readonly")
    assert mapped.from_cache
    for needle in ("STRASSE", "straße", "STRAẞE", "Ñandú", "ÑANDÚ", "SSE Ñ", "E Ñ", "ú k", "ß"):
        assert (mapped.index.road_matches(needle) == parsed.index.road_matches(needle)).all(), needle
    assert all(len(parsed.index.road_matches(n)) for n in ("STRAẞE", "straße", "ÑANDÚ", "ú k"))


# the text in the address -> a needle that must find it, and one that must not (the search is a
# case-insensitive literal: a letter matches its own case partners, never a letter pair)
SPECIAL_CASINGS = [
    ("STRAßE", "straẞe", "STRASSE"),  # ß's capital is ẞ, not SS
    ("AUSTIN CROSS ST", "cross", "croß"),
    ("ﬁELD RD", "ﬁeld", "FIELD"),  # a ligature is its own letter
    ("ISTANBUL", "istanbul", "ıstanbul"),  # dotless ı is not i
    ("İZMİR", "İzmİr", "izmir"),  # dotted İ is not i
    ("ΟΔΟΣ ΣΤΑΔΙΟΥ", "οδος", "οδοσσ"),  # final ς and σ are both Σ
]


@pytest.mark.parametrize(("address", "found_by", "not_found_by"), SPECIAL_CASINGS)
def test_a_letter_matches_its_case_partners_only(tmp_path, address, found_by, not_found_by):
    """`road=ß` counted every `S CONGRESS AVE` (upper-cased, ß is SS) and `road=ẞ` missed `STRAßE`:
    the search is literal, so one letter finds one letter, on the parsed and the mapped data alike."""
    data = tmp_path / "d.csv"
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    data.write_text("\n".join([lines[0], lines[1].replace("S CONGRESS AVE / E OLTORF ST", address), *lines[2:]]) + "\n")
    parsed = load_dataset(data, cache=False)
    load_dataset(data, cache_dir=str(tmp_path / "c"))
    mapped = load_dataset(data, cache_dir=str(tmp_path / "c"), cache_mode="readonly")
    assert mapped.from_cache
    for ds in (parsed, mapped):
        assert ds.index.road_count(found_by) == (1, 1), found_by
        assert ds.index.road_count(address) == (1, 1)
        assert ds.index.road_count(not_found_by) == (0, 0), not_found_by
        assert ds.index.road_count("ß") == (0, 0) or "ß" in address


def test_docs_name_the_current_cache_version():
    """first-install.md showed a .v6 cache file after the hour column's change made it .v7."""
    import re

    from devstack.paths import REPO_ROOT

    shown = {
        (doc.name, int(v))
        for doc in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
        for v in re.findall(r"\.v(\d+)\.arrow", doc.read_text())
    }
    assert shown and all(v == CACHE_VERSION for _, v in shown), shown


def test_keep_existing_builds_a_missing_cache_as_its_help_says(tmp_path, inproc, monkeypatch, capsys):
    """`--keep-existing` keeps the data and builds this version's cache (docs/data.md, the first-install
    loader log); its --help said "do nothing", which a reader of the chart's loader took literally."""
    data, cache = tmp_path / "pvc" / "traffic_incidents.csv", tmp_path / "pvc" / "cache"
    data.parent.mkdir()
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    monkeypatch.setenv("DATA_CACHE_DIR", str(cache))
    monkeypatch.setenv("DATA_CACHE_MODE", "readwrite")
    code, out, err = inproc("data", "fetch", "--from", SAMPLE, "--output", data, "--keep-existing")
    assert code == 0, err
    report = json.loads(out)
    assert report["kept"] and (cache / report["cache"].rsplit("/", 1)[1]).exists()
    assert data.read_bytes() == (FIXTURES / "portal10.csv").read_bytes()
    with pytest.raises(SystemExit):
        inproc("data", "fetch", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "do nothing" not in help_text and "build this version's parsed cache" in help_text
