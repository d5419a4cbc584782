"""Peer queues benchmarked against ours on the same Redis in the same run (issue 6, item 1).

Each peer runs the tutorial's code (:mod:`bench.peers.tutorial`) with its data loaded once per
worker process; :mod:`bench.peers.harness` drives drain, steady and round-trip runs through the
small :class:`bench.peers.base.Peer` interface; :mod:`bench.bench_peers` is the script.
"""

from __future__ import annotations

from .base import Peer


def peer_classes() -> dict[str, type[Peer]]:
    """Every peer whose library is installed (the ``bench`` dependency group), ours last."""
    from .hotqueue_peer import HotQueuePeer

    found: dict[str, type[Peer]] = {"hotqueue-raw": HotQueuePeer}
    try:
        from .rq_peer import RQPeer, RQSimplePeer

        found.update({"rq": RQPeer, "rq-simple": RQSimplePeer})
    except ImportError:
        pass
    try:
        from .celery_peer import CeleryPeer

        found["celery"] = CeleryPeer
    except ImportError:
        pass
    try:
        from .dramatiq_peer import DramatiqPeer

        found["dramatiq"] = DramatiqPeer
    except ImportError:
        pass
    from .ours import available, OursPeer

    if available():
        found["ours"] = OursPeer
    return found
