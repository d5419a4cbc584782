"""Build and run the project's images with buildah alone: no daemon, no registry, as root.

Running is done the way a hardened pod runs them, not with ``buildah run``: the image's root
filesystem is mounted (``buildah mount``), re-mounted read-only inside a private mount namespace,
a fresh tmpfs goes on ``/tmp`` (the one writable place, as the chart's emptyDir), and the command
is ``chroot``-ed as the image's numeric USER with exactly the image's environment plus overrides.
The network is the host's, so a container reaches the test's redis-server on 127.0.0.1 and the test
reaches the container's ports there too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


# Mounts made inside the container's own mount namespace; $1 is the image root filesystem.
_SANDBOX = """
set -e
root=$1; shift
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=512m tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /dev "$root/dev"
exec chroot "$@"
"""


def buildah(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``buildah`` with the storage driver of $STORAGE_DRIVER, when set (vfs works everywhere)."""
    driver = os.environ.get("STORAGE_DRIVER")
    cmd = ["buildah", *(["--storage-driver", driver] if driver else []), *args]
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, **kwargs)


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config a pod spec relies on."""

    name: str
    user: str
    env: dict[str, str]
    workdir: str
    entrypoint: list[str]
    cmd: list[str]
    exposed_ports: list[str]
    size_bytes: int

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        parts = self.user.split(":")
        return int(parts[1]) if len(parts) > 1 else self.uid

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def inspect_image(name: str) -> ImageConfig:
    doc = json.loads(buildah("inspect", "--type", "image", name).stdout)
    config = doc["OCIv1"]["config"]
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    size = sum(layer.get("size", 0) for layer in json.loads(doc["Manifest"]).get("layers", []))
    return ImageConfig(
        name=name,
        user=config.get("User", ""),
        env=env,
        workdir=config.get("WorkingDir", "/"),
        entrypoint=config.get("Entrypoint") or [],
        cmd=config.get("Cmd") or [],
        exposed_ports=sorted(config.get("ExposedPorts", {})),
        size_bytes=size,
    )


class MountedImage:
    """A working container of an image with its root filesystem mounted; removed on exit."""

    def __init__(self, image: str):
        self.image = image
        self.config = inspect_image(image)
        self.container = ""
        self.root = Path("/nonexistent")

    def __enter__(self) -> MountedImage:
        # A fixed name per image, so a run killed before its clean-up leaves no pile of containers.
        name = "atx-jobqueue-test-" + self.image.rsplit("/", 1)[-1].replace(":", "-")
        buildah("rm", name, check=False)
        self.container = buildah("from", "--pull=never", "--quiet", "--name", name, self.image).stdout.strip()
        self.root = Path(buildah("mount", self.container).stdout.strip())
        return self

    def __exit__(self, *exc) -> None:
        buildah("umount", self.container, check=False)
        buildah("rm", self.container, check=False)

    def command(self, argv: list[str] | None = None, env: dict[str, str] | None = None) -> list[str]:
        """The host command that runs ``argv`` (default: the image's entrypoint + cmd) sandboxed."""
        cfg = self.config
        environment = {**cfg.env, **(env or {})}
        inner = [
            "/usr/bin/env",
            "-i",
            "-C",
            cfg.workdir,
            *(f"{k}={v}" for k, v in environment.items()),
            *(argv or cfg.argv),
        ]
        chroot_args = [f"--userspec={cfg.uid}:{cfg.gid}", "--groups=", str(self.root), *inner]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _SANDBOX,
            "sh",
            str(self.root),
            *chroot_args,
        ]

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv, env), capture_output=True, text=True, timeout=timeout)

    def start(self, log_path: Path, argv: list[str] | None = None, env: dict[str, str] | None = None) -> Running:
        log = open(log_path, "wb")
        proc = subprocess.Popen(self.command(argv, env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return Running(proc, log_path, log)


@dataclass
class Running:
    """A started container process. Its pid is the app itself (unshare, sh and chroot all exec)."""

    proc: subprocess.Popen
    log_path: Path
    _log: object

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 30.0) -> int:
        """SIGTERM, as the kubelet sends, then SIGKILL to the whole group after ``grace`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = self.proc.wait(timeout=10)
        self._log.close()
        return code


def wait_until(
    predicate, timeout: float, interval: float = 0.2, what: str = "condition", running: Running | None = None
):
    """Poll ``predicate`` until it returns something truthy; fail with the container log if it never does."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if running is not None and running.proc.poll() is not None:
            raise AssertionError(
                f"container exited with {running.proc.returncode} before {what}:\n{running.log()[-4000:]}"
            )
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # connection refused while starting, etc.
            last_error = error
        time.sleep(interval)
    log = running.log()[-4000:] if running is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})\n{log}")
