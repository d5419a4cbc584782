"""Stopping: an API process told to stop answers its long polls at once and exits within seconds.

gunicorn stops a worker on SIGTERM (the kubelet's after preStop reaches the master, which sends its
workers SIGTERM; or one worker's own) by setting ``alive = False``. Its gevent worker then stops
accepting within a second and waits up to ``graceful_timeout`` for the connections it has
(``ggevent.GeventWorker.run``), so a long poll parked for up to MAX_WAIT_SECONDS held the process,
and its pod, that long. :func:`worker_class` adds, at the signal:

- every parked waiter wakes and answers as at its wait's end: the job's current document, a
  waiting submit its 202 with the id and ``Location`` (``waiting.DoneWaiter.close``);
- every request in flight answers with ``Connection: close``, so its connection ends with the
  answer. gunicorn closes only the connections of requests that *start* after the signal
  (``base_async.AsyncWorker.handle_request`` looks at ``alive`` before it runs the app); a response
  whose headers are not written yet follows its request's ``must_close``.

Requests that are not waiting (submits, reads, a synchronous analysis) finish as before, and the
worker exits once its connections are done. The worker logs ``Worker stopping (pid: N)`` when it has
done the above (gunicorn's master logs ``Handling signal: term``, the worker nothing until it exits). gunicorn runs a Python signal handler on gevent's hub
(the loop checks for signals once per iteration), where nothing may block or switch, so the handler
only flags and spawns, as gunicorn's own gevent ``handle_quit`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def worker_class(on_stop: Callable[[], None] | None = None, write_seconds: float | None = None) -> type:
    """gunicorn's gevent worker that, told to stop, calls ``on_stop`` (the app's
    ``DoneWaiter.close``) and answers every request in flight with ``Connection: close``; with
    ``write_seconds``, a client that reads nothing of its answer for that long is closed
    (``write_deadline``). Imported lazily: gunicorn's modules must not load before gevent patches
    the standard library."""
    import gevent
    from gunicorn.workers.ggevent import GeventWorker

    from .write_deadline import Deadlined

    class StoppingWorker(GeventWorker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.in_flight: set[Any] = set()  # gunicorn's parsed requests being answered

        def handle_request(self, listener_name, req, sock, addr):
            req.body.request = req  # unread.py reaches the request through environ["wsgi.input"]
            self.in_flight.add(req)
            if write_seconds:
                sock = Deadlined(sock, write_seconds, addr)
            try:
                return super().handle_request(listener_name, req, sock, addr)
            finally:
                self.in_flight.discard(req)

        def handle_exit(self, sig, frame):  # SIGTERM
            super().handle_exit(sig, frame)
            gevent.spawn(self.stopping)

        def stopping(self) -> None:
            in_flight = list(self.in_flight)
            for req in in_flight:
                req.must_close = True  # the answer says Connection: close; gunicorn then closes
            if on_stop is not None:
                on_stop()
            # the worker's own word that it took the signal (the master logs only that it got one):
            # from here it accepts nothing new and exits once its connections are done
            self.log.info(
                "Worker stopping (pid: %s): long polls answered, %d requests in flight end with their answer",
                self.pid,
                len(in_flight),
            )

    return StoppingWorker
