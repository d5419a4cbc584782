"""Our service as a peer: ``jobqueue-worker`` processes (and, for round trips, the HTTP API)."""

from __future__ import annotations

from .base import Peer


def available() -> bool:
    try:
        import jobqueue_worker.worker  # noqa: F401
    except ImportError:
        return False
    return True


class OursPeer(Peer):
    name = "ours"
    description = "atx-jobqueue worker (at-least-once delivery)"
    gated = False
