"""Peer queues benchmarked against ours on the same Redis in the same run (issue 6, item 1).

Each peer runs the tutorial's code (:mod:`bench.peers.tutorial`) with its data loaded once per
worker process; :mod:`bench.peers.harness` drives drain, steady and round-trip runs through the
small :class:`bench.peers.base.Peer` interface; :mod:`bench.bench_peers` is the script.
"""

from __future__ import annotations

import importlib.util

from .base import Peer


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peer_classes() -> dict[str, type[Peer]]:
    """Every peer whose library is installed (the ``bench`` dependency group), ours last."""
    from .hotqueue_peer import HotQueuePeer

    found: dict[str, type[Peer]] = {"hotqueue-raw": HotQueuePeer}
    if _installed("rq"):
        from .rq_peer import RQPeer, RQSimplePeer

        found.update({"rq": RQPeer, "rq-simple": RQSimplePeer})
    if _installed("celery"):
        from .celery_peer import CeleryPeer

        found["celery"] = CeleryPeer
    if _installed("dramatiq"):
        from .dramatiq_peer import DramatiqPeer

        found["dramatiq"] = DramatiqPeer
    from .ours import OursPeer, available

    if available():
        found["ours"] = OursPeer
    return found
