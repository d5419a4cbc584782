"""The data loader (the API pod's load-data init container), run from its rendered command and env
against local files and a loopback HTTP server standing in for the City of Austin portal."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from devstack.paths import SAMPLE
from tests.deploy.local import LocalPod
from tests.deploy.manifests import one, render_objects


@pytest.fixture
def portal(tmp_path):
    """A loopback HTTP server serving rows.csv (the sample) and broken.csv (not a dataset)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "rows.csv").write_bytes(SAMPLE.read_bytes())
    (site / "broken.csv").write_text("this,is\nnot,traffic data\n")
    # a reload test's first download: the sample's first 200 lines
    lines = SAMPLE.read_text().splitlines(keepends=True)
    (site / "small.csv").write_text("".join(lines[:200]))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _loader(tmp_path: Path, **loader_values):
    objs = render_objects({"data": {"loader": loader_values}})
    pod = LocalPod(one(objs, "Deployment", "api"), objs, tmp_path, "redis://unused")
    data_path = Path(pod.env(pod.container("load-data"))["DATA_PATH"])
    return pod, data_path


def test_sample_source_copies_the_image_sample(tmp_path):
    pod, data_path = _loader(tmp_path, source="sample")
    assert pod.run("load-data", tmp_path / "log", timeout=120) == 0, (tmp_path / "log").read_text()
    assert data_path.read_bytes() == SAMPLE.read_bytes()
    assert [p.name for p in data_path.parent.iterdir() if p.name.startswith(".loading")] == []


def test_url_source_downloads_and_keeps_an_existing_file_unless_forced(tmp_path, portal):
    pod, data_path = _loader(tmp_path, source="url", url=f"{portal}/rows.csv")
    assert pod.run("load-data", tmp_path / "log", timeout=120) == 0, (tmp_path / "log").read_text()
    assert data_path.read_bytes() == SAMPLE.read_bytes()

    data_path.write_text("edited by hand\n")
    assert pod.run("load-data", tmp_path / "log2", timeout=120) == 0
    assert data_path.read_text() == "edited by hand\n", "an upgrade must not replace the dataset"

    forced, _ = _loader(tmp_path, source="url", url=f"{portal}/rows.csv", force=True)
    assert forced.run("load-data", tmp_path / "log3", timeout=120) == 0
    assert data_path.read_bytes() == SAMPLE.read_bytes()


def test_a_url_reload_leaves_the_new_datas_cache_and_only_it(tmp_path, portal):
    """source: url with force: the download replaces the dataset, and the cache beside it on the
    volume is the new content's (named after its hash), remembered for the readers; the replaced
    content's cache is gone, so no pod can map it."""
    pytest.importorskip("atx_analysis.cache")
    from atx_analysis.cache import DataCache, content_hash

    pod, data_path = _loader(tmp_path, source="url", url=f"{portal}/small.csv", force=True)
    env = pod.env(pod.container("load-data"))
    cache_dir = env["DATA_CACHE_DIR"]
    assert Path(cache_dir).parent == data_path.parent, "the cache is not on the data volume"
    assert pod.run("load-data", tmp_path / "log", timeout=120) == 0, (tmp_path / "log").read_text()
    store = DataCache.of(data_path, cache_dir, "readonly")
    first = store.ready(data_path)
    assert first is not None and content_hash(data_path)[:20] in first.name

    (tmp_path / "site" / "small.csv").write_bytes(SAMPLE.read_bytes())  # the portal's data changed
    assert pod.run("load-data", tmp_path / "log2", timeout=120) == 0
    second = store.ready(data_path)
    assert data_path.read_bytes() == SAMPLE.read_bytes()
    assert second is not None and second != first and content_hash(SAMPLE)[:20] in second.name
    assert sorted(p.name for p in Path(cache_dir).glob("*.arrow")) == [second.name]


def test_a_download_that_is_not_a_dataset_never_reaches_the_workers(tmp_path, portal):
    pytest.importorskip("atx_analysis.dataset")
    pod, data_path = _loader(tmp_path, source="url", url=f"{portal}/broken.csv")
    assert pod.run("load-data", tmp_path / "log", timeout=120) != 0
    assert not data_path.exists()
    assert [p for p in data_path.parent.iterdir()] == [], "no partial file left behind"


def test_a_missing_url_fails_the_job(tmp_path, portal):
    pod, data_path = _loader(tmp_path, source="url", url=f"{portal}/nope.csv")
    assert pod.run("load-data", tmp_path / "log", timeout=120) != 0
    assert "404" in (tmp_path / "log").read_text()
    assert not data_path.exists()
