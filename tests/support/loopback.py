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
