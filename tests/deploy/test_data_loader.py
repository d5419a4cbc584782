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


@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_loader_builds_the_cache_of_the_reading_the_pods_use(tmp_path, setting):
    """config.dataDayFirst reached the API and worker pods (the ConfigMap) but not the loader, which
    set its own env: it built the cache of the data's own reading, the pods looked for the one of the
    forced reading (another file), and each parsed the file in its own memory."""
    from atx_analysis.dataset import load_dataset

    objs = render_objects(
        {"config": {"dataDayFirst": setting}, "data": {"loader": {"source": "sample"}, "shell": {"enabled": True}}}
    )
    pod = LocalPod(one(objs, "Deployment", "api"), objs, tmp_path, "redis://unused")
    assert pod.run("load-data", tmp_path / "log", timeout=120) == 0, (tmp_path / "log").read_text()
    (api,) = [c for c in pod.spec["containers"] if c["name"] == "api"]
    env = pod.env(api)
    assert env["DATA_DAY_FIRST"] == setting and env["DATA_CACHE_MODE"] == "readonly"
    ds = load_dataset(
        env["DATA_PATH"], cache_dir=env["DATA_CACHE_DIR"], cache_mode="readonly", day_first=setting == "true"
    )
    assert ds.from_cache, ds.cache_file
    shell = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("data-shell"))
    (hold,) = shell["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in hold["env"]}["DATA_DAY_FIRST"] == setting


def test_the_k8s_manifests_loader_and_data_shell_read_the_configmaps_day_first_setting():
    """The plain manifests' load-data and data-shell set their own env, as the chart's did: they
    take DATA_DAY_FIRST from the ConfigMap the API and worker pods read."""
    import yaml

    from devstack.paths import REPO_ROOT

    for env in ("prod", "test"):
        for path, name in (
            (f"k8s/{env}/app-{env}-deployment-api.yml", "load-data"),
            (f"k8s/{env}/data-shell/app-{env}-deployment-data-shell.yml", "data-shell"),
        ):
            (doc,) = [d for d in yaml.safe_load_all((REPO_ROOT / path).read_text()) if d and d["kind"] == "Deployment"]
            spec = doc["spec"]["template"]["spec"]
            (container,) = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
            (ref,) = [e["valueFrom"]["configMapKeyRef"] for e in container["env"] if e["name"] == "DATA_DAY_FIRST"]
            assert ref == {"name": f"atx-jobqueue-{env}-config", "key": "DATA_DAY_FIRST"}, path
