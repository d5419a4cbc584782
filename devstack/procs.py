"""Processes a test or benchmark starts: free ports, a session per process, bounded waits, stop.

Every process is started in a session of its own (``start_new_session``), so stopping it signals
exactly its process group (a gunicorn master and its workers, a supervisor and its children) and
never the caller's. Every wait is bounded and raises with a message naming what it waited for.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests

T = TypeVar("T")


# Ports handed out by free_port: below the kernel's ephemeral range, so no outgoing connection is
# given one as its local port between the pick and the server's bind (a port bind(0) picks is in that
# range, and a client's connect() takes such ports all the time), and above the ports people and
# services pick by hand (the team's 7xxx, 8000, 9090, 9100...). Each process claims blocks of them
# with a lock file, so two test sessions on one machine never hand out the same port; the kernel
# drops the claim when the process ends.
PORT_RANGE_START = 10000
PORT_BLOCK = 200
PORT_LOCKS = Path(tempfile.gettempdir()) / "atx-jobqueue-ports"


class _Ports:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.blocks: list[tuple[int, int]] = []  # (first port, lock fd)
        self.next = 0  # the next port to hand out
        self.end = 0  # the end of the block self.next is in
        self.turn = 0  # which held block a process that could claim no more goes round next

    def _ephemeral_start(self) -> int:
        try:
            return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 32768

    def _claim(self) -> bool:
        """Claim one more block nobody on this machine holds (a random one first: fewer lock attempts)."""
        blocks = (self._ephemeral_start() - PORT_RANGE_START) // PORT_BLOCK
        if blocks < 1:
            return False
        try:
            PORT_LOCKS.mkdir(mode=0o777, exist_ok=True)
        except OSError:
            return False
        held = {first for first, _ in self.blocks}
        start = random.randrange(blocks)
        for i in range(blocks):
            first = PORT_RANGE_START + ((start + i) % blocks) * PORT_BLOCK
            if first in held:
                continue
            try:
                fd = os.open(PORT_LOCKS / f"{first}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.blocks.append((first, fd))
            self.next, self.end = first, first + PORT_BLOCK
            return True
        return False

    def take(self, count: int) -> int | None:
        """The first of ``count`` consecutive ports, each free now and never handed out before by this
        process (until it has used all of its blocks: then it goes round them again); None if this
        machine gives no blocks (then the caller falls back to the kernel's choice)."""
        if count > PORT_BLOCK:
            return None
        with self.lock:
            if self.pid != os.getpid():  # a forked child inherits no claims: flock is per open file
                self.pid, self.blocks, self.next, self.end, self.turn = os.getpid(), [], 0, 0, 0
            for _ in range(4 * PORT_BLOCK * max(1, len(self.blocks) + 1)):
                if self.next + count > self.end:
                    if not self._claim():
                        if not self.blocks:
                            return None
                        self.turn = (self.turn + 1) % len(self.blocks)
                        first = self.blocks[self.turn][0]
                        self.next, self.end = first, first + PORT_BLOCK
                    continue
                first = self.next
                self.next += count
                if all(_bindable(port) for port in range(first, first + count)):
                    return first
            return None


def _bindable(port: int) -> bool:
    """Nothing is bound to the port on loopback (a listener, a connection, one in TIME_WAIT)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PORTS = _Ports()


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports nobody listens on (loopback), kept from other
    programs' connections and other test sessions until the caller binds it (see PORT_RANGE_START).
    ``count`` > 1 for a program that numbers ports from a base (``make up``'s WORKER_METRICS_BASE)."""
    port = _PORTS.take(count)
    if port is not None:
        return port
    for _ in range(100):  # the kernel's choice: free now, but in the ephemeral range
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if all(_bindable(p) for p in range(port + 1, port + count)):
            return port
    raise RuntimeError(f"no {count} consecutive free ports")


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
