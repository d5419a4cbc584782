"""The session fixture ``built_images``: both images built once from the real Dockerfiles on a from-scratch base;
and ``built_redis_images``: the local stand-ins for the chart's redis and redis_exporter images
(scripts/build-redis-images.sh, tests/images/redis/Dockerfile) on the same base.

Nothing can be pulled here, so the base is Debian made by debootstrap (scripts/make-base-image.sh,
cached per day under ~/.cache/atx-jobqueue) and passed as ``--build-arg PYTHON_IMAGE``; the build is
scripts/build-images.sh, the same one `make images` runs. ``SKIP_IMAGES=1`` skips all of this.
Set ``ATX_TEST_PYTHON_IMAGE`` to test against another base already in buildah's store
(e.g. docker.io/library/python:3.11-slim where it can be pulled).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from devstack.paths import REPO_ROOT, SAMPLE
from tests.images.containers import inspect_image


def why_not() -> str | None:
    if os.environ.get("SKIP_IMAGES", "") not in ("", "0"):
        return "SKIP_IMAGES is set"
    if os.geteuid() != 0:
        return "building and running images with buildah here needs root"
    for tool in ("buildah", "debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make setup installs it)"
    if not SAMPLE.exists():
        return "data/traffic_incidents_sample.csv is not in this checkout yet; the images bundle it"
    return None


def _storage_driver_that_works() -> None:
    """Keep buildah's default store (overlay, fast) when it works; else fall back to vfs (slow, works anywhere)."""
    if os.environ.get("STORAGE_DRIVER"):
        return
    if subprocess.run(["buildah", "info"], capture_output=True).returncode != 0:
        os.environ["STORAGE_DRIVER"] = "vfs"  # read by scripts/ and containers.buildah alike


def _build(request, script: str, env: dict[str, str]) -> dict[str, str]:
    """Run a build script of scripts/ with a tag per checkout (two worktrees testing at once never run
    each other's images); {name suffix: image} from its "name id size" lines."""
    _storage_driver_that_works()
    tag = "test-" + hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:8]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    started = time.monotonic()
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / script)],
        cwd=REPO_ROOT,
        env={**os.environ, "IMAGE_TAG": tag, **env},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/{script} failed ({done.returncode}):\n{done.stderr[-6000:]}")
    images = {}
    for line in done.stdout.splitlines():
        name = line.split()[0]
        images[name.rsplit(":", 1)[0].rsplit("/", 1)[-1].removeprefix("atx-jobqueue-")] = name
    if reporter is not None:  # shown in the test output even under capture: CI logs keep the sizes
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            driver = os.environ.get("STORAGE_DRIVER", "buildah's default")
            reporter.write_line(
                f"\nimages: {script} built in {time.monotonic() - started:.0f} s (storage driver: {driver})"
            )
            for name in images.values():
                size = inspect_image(name).size_bytes
                reporter.write_line(f"images: {name} {size / 1e6:.0f} MB (uncompressed layers)")
    return images


@pytest.fixture(scope="session")
def built_images(request) -> dict[str, str]:
    """{"api": image name, "worker": image name}, built (or found in the layer cache) once."""
    images = _build(request, "build-images.sh", {"PYTHON_IMAGE": os.environ.get("ATX_TEST_PYTHON_IMAGE", "local")})
    assert set(images) == {"api", "worker"}, images
    return images


@pytest.fixture(scope="session")
def built_redis_images(request) -> dict[str, str]:
    """{"redis": image name, "redis-exporter": image name}: Debian's redis-server and
    prometheus-redis-exporter in images shaped like the official ones, built once."""
    images = _build(request, "build-redis-images.sh", {"BASE_IMAGE": os.environ.get("ATX_TEST_BASE_IMAGE", "local")})
    assert set(images) == {"redis", "redis-exporter"}, images
    return images
