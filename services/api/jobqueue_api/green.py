"""gevent in the API: patch once, early; run CPU-heavy work off the event loop; bound client reads.

Under ``jobqueue-api`` every gunicorn worker is a gevent worker (``serve.py`` says why). A waiting
long poll or a silent client then costs a greenlet, not a thread. Two things a greenlet must not do
are handled here: hog the loop with pandas/matplotlib CPU (:func:`offload` runs it on a real OS
thread) and wait forever on a client that stops sending (:func:`deadline`). Outside gunicorn (the
flask test client, ``flask run``) nothing is patched and both fall back to plain calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Deadline(Exception):
    """A client read did not finish within its deadline (see :func:`deadline`)."""


def patch() -> None:
    """Monkey-patch the standard library for gevent. Must run before redis, flask or
    prometheus_client are imported (``jobqueue-api`` calls it first), so the app the gunicorn
    master preloads is built on patched sockets and locks."""
    try:
        # Before patching: matplotlib's Figure has one class-wide render lock, made at import. Plots
        # are drawn on native threads (offload); a gevent lock shared by two native threads hangs
        # both (seen: two concurrent sync plots never returned), a native lock does not.
        import matplotlib.figure  # noqa: F401
    except ImportError:  # pragma: no cover - the analysis package always brings matplotlib
        pass
    from gevent import monkey

    monkey.patch_all()


def patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency of the API package
        return False
    return monkey.is_module_patched("socket")


def offload(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on one of the hub's native threads while this greenlet waits, so the event
    loop keeps serving other requests (pandas releases the GIL for much of its work)."""
    if not patched():
        return fn(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(fn, args)


def in_background(fn: Callable[..., Any], *args: Any) -> None:
    """Start ``fn(*args)`` on a native thread and return at once: the hub's threadpool under gevent
    (a greenlet would hold the loop for all of ``fn``'s CPU), a daemon thread outside it."""
    if patched():
        import gevent

        gevent.get_hub().threadpool.spawn(fn, *args)
        return
    import threading

    threading.Thread(target=fn, args=args, daemon=True).start()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Deadline` if the block (a client body read) takes longer than ``seconds``.
    Under gevent only: without it a blocking read cannot be interrupted, and the deadline is the
    HTTP server's business."""
    if not patched() or seconds <= 0:
        yield
        return
    import gevent

    timer = gevent.Timeout(seconds, Deadline(f"no complete body within {seconds:g} s"))
    timer.start()
    try:
        yield
    finally:
        timer.close()
