"""Whether this machine has an IPv6 loopback: the tests of the bracketed ``[::1]`` forms skip
without one (a container with IPv6 disabled), rather than fail on something the code cannot fix."""

from __future__ import annotations

import socket

import pytest


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")


def listening_addresses(port: int) -> set[str]:
    """The local addresses LISTEN sockets on ``port`` are bound to (IPv4 and IPv6), from /proc/net:
    ``{"127.0.0.1"}`` for loopback only, ``"0.0.0.0"`` or ``"::"`` for every interface."""
    import ipaddress

    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            hexaddr, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:
                continue
            raw = bytes.fromhex(hexaddr)
            # the kernel prints each 32-bit word in host (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(packed)))
    return found
