"""Processes a test or benchmark starts: free ports, a session per process, bounded waits, stop.

Every process is started in a session of its own (``start_new_session``), so stopping it signals
exactly its process group (a gunicorn master and its workers, a supervisor and its children) and
never the caller's. Every wait is bounded and raises with a message naming what it waited for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(p) for p in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def alive(pid: int) -> bool:
    """Running (a zombie does not count: it has exited but nobody reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def signal_group(popen: subprocess.Popen, sig: int) -> None:
    """``sig`` to the process group ``popen`` leads, or to ``popen`` alone when it leads none.

    A process started without a session of its own shares the caller's group: signalling that
    group would hit the caller, so only the process itself is signalled then."""
    try:
        if os.getpgid(popen.pid) == popen.pid:
            os.killpg(popen.pid, sig)
        elif popen.poll() is None:
            os.kill(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all(popens: Iterable[subprocess.Popen], timeout: float = 10.0, term_group: bool = True) -> None:
    """SIGTERM every process first, so shutdowns overlap; SIGKILL what is left after ``timeout``
    (each); finally SIGKILL each group, since a group leader's children may outlive it.

    ``term_group=False`` sends the SIGTERM to the process alone, as the kubelet does to a
    container's main process: then the process itself must stop its children."""
    popens = list(popens)
    for p in popens:
        if p.poll() is None:
            if term_group:
                signal_group(p, signal.SIGTERM)
            else:
                p.send_signal(signal.SIGTERM)
    for p in popens:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(p, signal.SIGKILL)
            p.wait(5)
        signal_group(p, signal.SIGKILL)


def stop(popen: subprocess.Popen, timeout: float = 10.0, term_group: bool = True) -> int | None:
    """Stop one process as :func:`stop_all` does; its exit code (negative: killed by a signal)."""
    stop_all([popen], timeout, term_group)
    return popen.returncode


@dataclass
class Proc:
    """One started process: its Popen, a name, its log file, and the port it serves (0: none)."""

    name: str
    popen: subprocess.Popen
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL, then reap it: what an OOM kill or a lost node looks like to the others."""
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def wait_exit(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the whole session, SIGKILL it after ``timeout``; never leaves an orphan behind."""
        return stop(self.popen, timeout)


def spawn(argv: list[str], env: Mapping[str, str], log: Path, name: str = "", cwd: Path | None = None) -> Proc:
    """Start ``argv`` in a session of its own, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name or Path(argv[0]).name, popen, log)


def wait_http(
    url: str, proc: Proc | subprocess.Popen | None = None, timeout: float = 60.0, status: int | None = 200
) -> None:
    """Until ``url`` answers (with ``status``; None: any answer at all). Fails at once, with the
    log's tail when there is one, if ``proc`` exits first."""

    def up() -> bool:
        popen = proc.popen if isinstance(proc, Proc) else proc
        if popen is not None and popen.poll() is not None:
            tail = proc.log_tail() if isinstance(proc, Proc) else ""
            raise RuntimeError(f"the process serving {url} exited with {popen.returncode}\n{tail}")
        try:
            code = requests.get(url, timeout=1).status_code
        except requests.RequestException:
            return False
        return status is None or code == status

    wait_until(up, timeout, url, interval=0.1)
