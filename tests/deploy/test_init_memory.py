"""The workers' small init container fits its memory limit with room to spare.

`wait-for-data` runs the project's own CLI (`jobqueue data wait`) under a limit of a few tens of MiB;
an init container killed for memory leaves the pod in `Init:OOMKilled`, restarting forever, with no
worker at all. Its program is run here with the rendered command and environment (DATA_PATH on a
copy of the bundled sample, the parsed cache already on the "volume", as the loader leaves it), and
its peak resident memory, from the kernel's own accounting of that process, must stay under 60% of
the rendered limit: imports grow, and page cache and the runtime's own overhead are charged to the
same cgroup (measured here: 37 MiB resident; 55 MB in a podman container's cgroup, page cache
included, against the 64Mi limit it had).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from devstack.paths import BIN, SAMPLE
from tests.deploy.manifests import k8s_objects, pod_spec, resolved_env, scenario_objects

SOURCES = ["chart:default", "chart:exposed", "k8s:test", "k8s:prod"]
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
HEADROOM = 0.6
MEASURE = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=sys.stderr).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i?)?", quantity).groups()
    return int(number) * UNITS.get(unit or "", 1)


def _wait_for_data(source: str):
    kind, name = source.split(":")
    objs = scenario_objects(name) if kind == "chart" else k8s_objects(name)
    (worker,) = [
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    ]
    (init,) = [c for c in pod_spec(worker).get("initContainers", []) if c["name"] == "wait-for-data"]
    return init, objs


@pytest.mark.parametrize("source", SOURCES)
def test_wait_for_data_fits_its_memory_limit(source, tmp_path):
    init, objs = _wait_for_data(source)
    limit = _bytes(init["resources"]["limits"]["memory"])
    env = resolved_env(init, objs)
    data = tmp_path / "data" / "traffic_incidents.csv"
    data.parent.mkdir()
    env.update(DATA_PATH=str(data), DATA_CACHE_DIR=str(tmp_path / "data" / "cache"))
    # the volume as the loader leaves it: the file, its parsed cache and the loader's memo of both
    loaded = subprocess.run(
        [str(BIN / "jobqueue"), "data", "fetch", "--output", str(data), "--from", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env, "DATA_CACHE_MODE": "readwrite"},
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    command = [str(BIN / init["command"][0]), *init["command"][1:], *init.get("args", [])]
    # through a small parent: a child forked from this test process would count the test's own
    # resident memory (shared until exec) in its peak
    measured = subprocess.run(
        [str(BIN / "python"), "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert measured.returncode == 0, measured.stderr[-2000:]
    peak = int(measured.stdout.split()[-1]) * 1024
    print(f"{source}: wait-for-data peak {peak / 2**20:.0f} MiB of a {limit / 2**20:.0f} MiB limit")
    assert peak <= HEADROOM * limit, (
        f"{source}: wait-for-data peaked at {peak / 2**20:.0f} MiB, over {HEADROOM:.0%} of its "
        f"{limit / 2**20:.0f} MiB limit"
    )
