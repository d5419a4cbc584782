"""free_port: the ports tests and benchmarks start servers on.

A port the kernel picks with bind(0) is free when picked but sits in the ephemeral range, where
every outgoing connection on the machine takes its local port: between the pick and the server's
bind a client's connection could hold it (and ``make up``'s worker 2 binds WORKER_METRICS_BASE + 1,
which nobody checked at all). Another test session on the machine could pick it too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from devstack.paths import REPO_ROOT
from devstack.procs import free_port


def _ephemeral() -> range:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def test_ports_are_outside_the_range_outgoing_connections_take_theirs_from():
    ports = [free_port() for _ in range(20)]
    assert not [p for p in ports if p in _ephemeral()], ports
    assert len(set(ports)) == len(ports)


def test_a_base_and_the_ports_numbered_from_it_are_all_free_and_not_handed_out_again():
    base = free_port(3)
    for port in range(base, base + 3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    later = [free_port() for _ in range(5)]
    assert not set(later) & {base, base + 1, base + 2}, (base, later)


def test_a_port_something_listens_on_is_never_handed_out():
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        # the next ones of this process's block: free_port must step over a listener placed there
        with socket.socket() as next_one:
            next_one.bind(("127.0.0.1", taken + 1))
            next_one.listen()
            assert taken + 1 not in [free_port() for _ in range(5)]


def test_two_test_sessions_at_once_never_get_the_same_port():
    code = (
        "import json, sys, time\n"
        "from devstack.procs import free_port\n"
        "ports = [free_port() for _ in range(300)]\n"
        "print(json.dumps(ports), flush=True)\n"
        "sys.stdin.read()\n"  # keeps its claim until the test has compared
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        theirs = set(json.loads(other.stdout.readline()))
        mine = {free_port() for _ in range(300)}
        assert len(theirs) == 300 and len(mine) == 300
        assert not mine & theirs, sorted(mine & theirs)[:10]
    finally:
        other.communicate(timeout=60)
